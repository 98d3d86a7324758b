//! The backend's balancing options: `ip_hash`, `sticky_session_cookie`, `max_fails` and
//! `fail_timeout` (task mode only), and [`BackendOptions`], which the TLS family fills too
//! (`ssl_backend`, `ssl_passthrough`), split by where HAProxy takes each option.

use std::collections::BTreeMap;

use super::keys::{
    COMPRESS, COOKIE_NAME_MAX, FAIL_TIMEOUT, HEALTH_INTERVAL, HEALTH_PATH, IP_HASH, MAX_FAILS,
    STICKY_SESSION_COOKIE,
};
use super::{check_chars, parse_bool, LabelError, Reader};
use crate::model::Reason;

/// nginx's defaults when only one of the two failure labels is set.
pub const MAX_FAILS_DEFAULT: u32 = 1;
pub const FAIL_TIMEOUT_DEFAULT_MS: u32 = 10_000;

/// `health_interval` without the label: the template's `inter 2s` (`haproxy/base.cfg`).
pub const HEALTH_INTERVAL_DEFAULT_MS: u32 = 2_000;
/// Shortest `health_interval`: 100 ms (a check every 100 ms per task is already 10 requests
/// a second per task; shorter would load the tasks more than it tells).
pub const HEALTH_INTERVAL_MIN_MS: u32 = 100;
/// Longest `health_interval`: 1 h (a task failing is then out within `fall 2` x 1 h).
pub const HEALTH_INTERVAL_MAX_MS: u32 = 3_600_000;

/// The balancing option labels of a task-mode service; every error found.
pub(super) fn parse_options(
    service: &str,
    labels: &BTreeMap<String, String>,
) -> Result<BackendOptions, Vec<LabelError>> {
    let mut errors = Vec::new();
    let read = Reader { service, labels };
    let ip_hash = read
        .optional(IP_HASH, &mut errors, |s, v| parse_bool(s, IP_HASH, v))
        .flatten()
        .unwrap_or_default();
    let sticky_cookie = read
        .optional(STICKY_SESSION_COOKIE, &mut errors, parse_cookie_name)
        .flatten();
    let max_fails = read
        .optional(MAX_FAILS, &mut errors, parse_max_fails)
        .flatten();
    let fail_timeout = read
        .optional(FAIL_TIMEOUT, &mut errors, parse_fail_timeout)
        .flatten();
    let compress = read
        .optional(COMPRESS, &mut errors, |s, v| parse_bool(s, COMPRESS, v))
        .flatten()
        .unwrap_or_default();
    let interval = read
        .optional(HEALTH_INTERVAL, &mut errors, parse_health_interval)
        .flatten();
    let health_check = match (labels.contains_key(HEALTH_PATH), interval) {
        (true, interval_ms) => Some(HealthCheck {
            interval_ms: interval_ms.unwrap_or(HEALTH_INTERVAL_DEFAULT_MS),
        }),
        (false, None) => None,
        (false, Some(_)) => {
            errors.push(LabelError::invalid(
                service,
                HEALTH_INTERVAL,
                &labels[HEALTH_INTERVAL],
                Reason::Needs { needs: HEALTH_PATH },
            ));
            None
        }
    };
    // nginx: max_fails=0 turns the accounting off.
    let failure_limit = match (max_fails, fail_timeout) {
        (None, None) | (Some(0), _) => None,
        (max_fails, fail_timeout_ms) => Some(FailureLimit {
            max_fails: max_fails.unwrap_or(MAX_FAILS_DEFAULT),
            fail_timeout_ms: fail_timeout_ms.unwrap_or(FAIL_TIMEOUT_DEFAULT_MS),
        }),
    };
    if errors.is_empty() {
        Ok(BackendOptions {
            ip_hash,
            sticky_cookie,
            failure_limit,
            health_check,
            compress,
            backend_tls: None,
            passthrough: false,
            timeout_connect_ms: None,
        })
    } else {
        Err(errors)
    }
}

/// `com.docker.lb.max_fails`: failed requests in a row that take a task out, 0..=1000 (0:
/// off, as in nginx).
pub fn parse_max_fails(service: &str, value: &str) -> Result<u32, LabelError> {
    check_chars(service, MAX_FAILS, value)?;
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    match value.parse::<u32>() {
        Ok(n) if plain && n <= 1000 => Ok(n),
        _ => Err(LabelError::invalid(
            service,
            MAX_FAILS,
            value,
            Reason::NotACount,
        )),
    }
}

/// `com.docker.lb.fail_timeout`: a duration (`super::duration`: `500ms`, `5s` or `5`, `2m`),
/// 1 ms up to 1 h. Milliseconds.
pub fn parse_fail_timeout(service: &str, value: &str) -> Result<u32, LabelError> {
    check_chars(service, FAIL_TIMEOUT, value)?;
    match super::duration::parse_ms(value) {
        Some(ms) if (1..=3_600_000).contains(&ms) => Ok(ms as u32),
        _ => Err(LabelError::invalid(
            service,
            FAIL_TIMEOUT,
            value,
            Reason::NotADuration,
        )),
    }
}

/// `com.docker.lb.health_interval`: a duration (`super::duration`: `500ms`, `5s` or `5`,
/// `2m`, `1h`), trimmed of spaces, from [`HEALTH_INTERVAL_MIN_MS`] to
/// [`HEALTH_INTERVAL_MAX_MS`]. Milliseconds.
pub fn parse_health_interval(service: &str, value: &str) -> Result<u32, LabelError> {
    let range = u64::from(HEALTH_INTERVAL_MIN_MS)..=u64::from(HEALTH_INTERVAL_MAX_MS);
    match super::duration::parse_ms(value.trim()) {
        Some(ms) if range.contains(&ms) => Ok(ms as u32),
        _ => Err(LabelError::invalid(
            service,
            HEALTH_INTERVAL,
            value,
            Reason::NotAnInterval,
        )),
    }
}

/// `com.docker.lb.sticky_session_cookie`: the cookie's name (see [`is_cookie_name`]).
pub fn parse_cookie_name(service: &str, value: &str) -> Result<String, LabelError> {
    check_chars(service, STICKY_SESSION_COOKIE, value)?;
    if is_cookie_name(value) {
        Ok(value.to_owned())
    } else {
        Err(LabelError::invalid(
            service,
            STICKY_SESSION_COOKIE,
            value,
            Reason::NotACookieName,
        ))
    }
}

/// Per-backend balancing options from Interlock labels. HAProxy takes them in two places:
/// [`SectionOptions`] in the backend's config section (or the named defaults it is created
/// from), [`ServerOptions`] as keywords on each server (`add server` repeats them). Changing
/// either is a reload before HAProxy 3.4 and a new backend generation from 3.4.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendOptions {
    /// `com.docker.lb.ip_hash=true`: the client's address picks the server (`balance
    /// source`, consistent hashing so that slots can be added at runtime).
    pub ip_hash: bool,
    /// `com.docker.lb.sticky_session_cookie=<name>`: HAProxy inserts a cookie of that name
    /// naming the server (a dynamic cookie, derived from the server's address, so it follows
    /// `set server addr`), and a request carrying it goes back to that server.
    pub sticky_cookie: Option<String>,
    /// `com.docker.lb.max_fails` / `com.docker.lb.fail_timeout` (Interlock's passive health
    /// checks, from nginx): a task is taken out of rotation after this many failed requests in
    /// a row, and tried again after the timeout.
    pub failure_limit: Option<FailureLimit>,
    /// `com.docker.lb.health_path` (+ `health_interval`): an active HTTP health check instead
    /// of the template's TCP connect. The path and `Host` are hosts map entries
    /// ([`crate::model::shaping::Shaping::health_path`]); only whether the check is HTTP and
    /// its interval are the backend's.
    pub health_check: Option<HealthCheck>,
    /// `com.docker.lb.compress=true`: HAProxy compresses responses of the usual text types
    /// for clients that accept it, never one that already has a `Content-Encoding`
    /// (`compression algo gzip deflate` + `compression type ...` in the section;
    /// configuration.txt, "compression").
    pub compress: bool,
    /// `com.docker.lb.ssl_backend=true`: HAProxy speaks TLS to the servers
    /// (`ssl_backend_tls_verify`: verifying their certificates or not).
    pub backend_tls: Option<BackendTls>,
    /// `com.docker.lb.ssl_passthrough=true`: a `mode tcp` backend that the HTTPS entry sends
    /// TLS connections to by SNI, untouched; plain HTTP never reaches it.
    pub passthrough: bool,
    /// `com.docker.lb.timeout_connect` as the backend section's `timeout connect <ms>`, for
    /// HAProxy before 3.4 (which refuses `set-timeout connect`); on 3.4+ the planner clears it
    /// and the map entry does the work ([`crate::plan::PlanSettings::connect_timeout_rule`]).
    pub timeout_connect_ms: Option<u32>,
}

/// TLS from HAProxy to the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendTls {
    /// `required`: the task's certificate must verify against the CA bundle the driver installs
    /// in the config dir (`haproxy::render::backend_ca_path`), else the connection fails;
    /// `none`: any certificate is taken.
    pub verify: bool,
}

/// nginx's `max_fails`/`fail_timeout`, as HAProxy does it: `observe layer7 error-limit
/// <max_fails> on-error mark-down` counts consecutive connection errors, timeouts and 5xx
/// answers; the server is marked down and checked again after `fail_timeout` (`fastinter`,
/// which `mark-down` forces, and `downinter`); `rise 2` brings it back (the first check after
/// a mark-down may come at once, the second comes `fail_timeout` later). nginx counts
/// failures within `fail_timeout` rather than in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FailureLimit {
    /// 1..=1000.
    pub max_fails: u32,
    /// Milliseconds, 1..=3_600_000.
    pub fail_timeout_ms: u32,
}

/// An active HTTP health check: every `interval_ms` each task gets `GET <health_path>`; two
/// answers outside 2xx/3xx in a row (or timeouts, the template's `fall 2`) take it out, two
/// good ones (`rise 2`) bring it back. HAProxy: `option httpchk`, `http-check send` with the
/// path and host read from the hosts map, `http-check expect status 200-399` in the section
/// (configuration.txt, "option httpchk", "http-check send", "http-check expect", 2.2+), and
/// `inter <ms>` on each server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HealthCheck {
    /// Milliseconds between two checks of a task, 100..=3_600_000.
    pub interval_ms: u32,
}

/// The options HAProxy takes in a backend's section, or in the named defaults section a
/// backend is created from at runtime (3.4+: `add backend <b> from <defaults>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectionOptions {
    /// `balance source` + `hash-type consistent` rather than `balance roundrobin`.
    pub ip_hash: bool,
    /// `cookie <name> insert indirect nocache dynamic`; always an [`is_cookie_name`].
    pub sticky_cookie: Option<String>,
    /// `mode tcp`.
    pub passthrough: bool,
    /// `option httpchk` and the `http-check` rules of [`HealthCheck`].
    pub httpchk: bool,
    /// `compression algo` and `compression type` lines.
    pub compress: bool,
    /// `timeout connect <ms>` (HAProxy before 3.4; see [`BackendOptions::timeout_connect_ms`]).
    /// Never in a named defaults section: a backend with it writes the line in its own.
    pub timeout_connect_ms: Option<u32>,
}

/// The options HAProxy takes as server keywords: the backend's `default-server` lines, and
/// `add server`, which must repeat them (a server added at runtime inherits none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerOptions {
    pub failure_limit: Option<FailureLimit>,
    pub backend_tls: Option<BackendTls>,
    /// `inter <ms>`: the health check's interval ([`HealthCheck::interval_ms`]).
    pub check_inter_ms: Option<u32>,
}

impl BackendOptions {
    /// The options that go in the backend's section. With [`BackendOptions::server`] and
    /// [`BackendOptions::from_parts`], the one place that says where each option goes: the
    /// destructuring is exhaustive, so a new field must be placed here to compile.
    pub fn section(&self) -> SectionOptions {
        let Self {
            ip_hash,
            sticky_cookie,
            passthrough,
            health_check,
            compress,
            timeout_connect_ms,
            failure_limit: _,
            backend_tls: _,
        } = self;
        SectionOptions {
            ip_hash: *ip_hash,
            sticky_cookie: sticky_cookie.clone(),
            passthrough: *passthrough,
            httpchk: health_check.is_some(),
            compress: *compress,
            timeout_connect_ms: *timeout_connect_ms,
        }
    }

    /// The options that are server keywords.
    pub fn server(&self) -> ServerOptions {
        let Self {
            ip_hash: _,
            sticky_cookie: _,
            passthrough: _,
            failure_limit,
            backend_tls,
            health_check,
            compress: _,
            timeout_connect_ms: _,
        } = self;
        ServerOptions {
            failure_limit: *failure_limit,
            backend_tls: *backend_tls,
            check_inter_ms: health_check.map(|h| h.interval_ms),
        }
    }

    /// The options of a backend with `section` whose servers carry `server`.
    pub fn from_parts(section: SectionOptions, server: ServerOptions) -> Self {
        let SectionOptions {
            ip_hash,
            sticky_cookie,
            passthrough,
            httpchk,
            compress,
            timeout_connect_ms,
        } = section;
        let ServerOptions {
            failure_limit,
            backend_tls,
            check_inter_ms,
        } = server;
        // A check without its interval keyword has the template's.
        let health_check = httpchk.then(|| HealthCheck {
            interval_ms: check_inter_ms.unwrap_or(HEALTH_INTERVAL_DEFAULT_MS),
        });
        Self {
            ip_hash,
            sticky_cookie,
            failure_limit,
            health_check,
            compress,
            backend_tls,
            passthrough,
            timeout_connect_ms,
        }
    }
}

/// Whether `name` can be a sticky cookie's name: 1 to [`COOKIE_NAME_MAX`] letters, digits,
/// `-`, `_` or `.` (a subset of HTTP's token that needs no quoting anywhere, and that a named
/// defaults section's name can hold). The one home of the rule: the label and the named
/// defaults sections check it.
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= COOKIE_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::testing::*;
    use crate::model::labels::*;

    #[test]
    fn ip_hash_and_a_sticky_cookie_become_the_routes_options_without_warnings() {
        let p = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (IP_HASH, "true"),
            (STICKY_SESSION_COOKIE, "session_id-1.x"),
        ]))
        .unwrap();
        assert_eq!(p.warnings, vec![]);
        assert_eq!(
            p.route.expect("route").options,
            BackendOptions {
                ip_hash: true,
                sticky_cookie: Some("session_id-1.x".into()),
                failure_limit: None,
                health_check: None,
                compress: false,
                backend_tls: None,
                passthrough: false,
                timeout_connect_ms: None,
            }
        );
        let plain = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (IP_HASH, "false"),
        ]))
        .unwrap()
        .route
        .expect("route");
        assert_eq!(plain.options, BackendOptions::default());
    }

    #[test]
    fn max_fails_and_fail_timeout_become_a_failure_limit_with_nginx_defaults() {
        let limit = |labels: &[(&str, &str)]| {
            let mut all = vec![(HOSTS, "a.example"), (PORT, "80")];
            all.extend_from_slice(labels);
            route(&all).expect("route").options.failure_limit
        };
        let l = |max_fails, fail_timeout_ms| {
            Some(crate::model::FailureLimit {
                max_fails,
                fail_timeout_ms,
            })
        };
        assert_eq!(limit(&[]), None);
        assert_eq!(limit(&[(MAX_FAILS, "3"), (FAIL_TIMEOUT, "5s")]), l(3, 5000));
        assert_eq!(limit(&[(MAX_FAILS, "2")]), l(2, 10_000));
        assert_eq!(limit(&[(FAIL_TIMEOUT, "500ms")]), l(1, 500));
        assert_eq!(limit(&[(FAIL_TIMEOUT, "2m")]), l(1, 120_000));
        assert_eq!(limit(&[(FAIL_TIMEOUT, "30")]), l(1, 30_000));
        assert_eq!(
            limit(&[(MAX_FAILS, "0"), (FAIL_TIMEOUT, "30")]),
            None,
            "0 is off"
        );
        for (label, bad) in [
            (MAX_FAILS, "-1"),
            (MAX_FAILS, "1001"),
            (MAX_FAILS, "03"),
            (MAX_FAILS, "x"),
            (FAIL_TIMEOUT, "0"),
            (FAIL_TIMEOUT, "61m"),
            (FAIL_TIMEOUT, "5h"),
            (FAIL_TIMEOUT, "1.5s"),
            (FAIL_TIMEOUT, "s"),
            (FAIL_TIMEOUT, "10 s"),
            (FAIL_TIMEOUT, "99999999999999999999s"),
        ] {
            let errs = errors(&[(HOSTS, "a.example"), (PORT, "80"), (label, bad)]);
            assert!(
                matches!(errs.as_slice(), [LabelError::Invalid { label: l, .. }] if l == label),
                "{label}={bad:?}: {errs:?}"
            );
        }
    }

    #[test]
    fn a_health_path_turns_the_check_on_with_its_interval_bounded_from_100ms_to_1h() {
        let check = |labels: &[(&str, &str)]| {
            let mut all = vec![(HOSTS, "a.example"), (PORT, "80")];
            all.extend_from_slice(labels);
            route(&all).expect("route").options.health_check
        };
        let every = |interval_ms| Some(HealthCheck { interval_ms });
        assert_eq!(check(&[]), None);
        assert_eq!(check(&[(HEALTH_PATH, "/healthz")]), every(2_000));
        for (value, ms) in [
            ("5s", 5_000),
            ("5", 5_000),
            ("100ms", 100),
            ("2m", 120_000),
            ("1h", 3_600_000),
        ] {
            assert_eq!(
                check(&[(HEALTH_PATH, "/"), (HEALTH_INTERVAL, value)]),
                every(ms),
                "{value}"
            );
        }
        for bad in [
            "99ms",
            "0",
            "61m",
            "2h",
            "1.5s",
            "05s",
            "5 s",
            "-1s",
            "",
            "99999999999999h",
        ] {
            let errs = errors(&[
                (HOSTS, "a.example"),
                (PORT, "80"),
                (HEALTH_PATH, "/"),
                (HEALTH_INTERVAL, bad),
            ]);
            assert!(
                matches!(errs.as_slice(), [LabelError::Invalid { label, reason, .. }]
                    if label == HEALTH_INTERVAL && **reason == Reason::NotAnInterval),
                "{bad:?}: {errs:?}"
            );
        }
        let errs = errors(&[(HOSTS, "a.example"), (PORT, "80"), (HEALTH_INTERVAL, "5s")]);
        assert!(
            errs[0]
                .to_string()
                .contains("needs com.docker.lb.health_path"),
            "{errs:?}"
        );
    }

    #[test]
    fn compress_is_a_bool_and_anything_else_is_an_error_naming_it() {
        let compress = |value: &str| {
            route(&[(HOSTS, "a.example"), (PORT, "80"), (COMPRESS, value)])
                .map(|r| r.options.compress)
        };
        assert_eq!(compress("true"), Ok(true));
        assert_eq!(compress("false"), Ok(false));
        let errs = compress("gzip").expect_err("not a bool");
        assert!(
            matches!(errs.as_slice(), [LabelError::Invalid { label, reason, .. }]
                if label == COMPRESS && **reason == Reason::NotABool),
            "{errs:?}"
        );
        let on = BackendOptions {
            compress: true,
            ..BackendOptions::default()
        };
        assert!(on.section().compress, "a section option");
        assert_eq!(on.server(), ServerOptions::default(), "no server keyword");
    }

    #[test]
    fn a_bad_or_hostile_option_label_is_an_error_naming_it_and_leaves_the_route_out() {
        let long = "c".repeat(65);
        let smuggle = |ch| Reason::Syntax { ch, in_host: false };
        for (label, value, reason) in [
            (IP_HASH, "yes", Reason::NotABool),
            (IP_HASH, "", Reason::NotABool),
            (STICKY_SESSION_COOKIE, "", Reason::NotACookieName),
            (STICKY_SESSION_COOKIE, "a=b", Reason::NotACookieName),
            (STICKY_SESSION_COOKIE, "a,b", Reason::NotACookieName),
            (STICKY_SESSION_COOKIE, long.as_str(), Reason::NotACookieName),
            (
                STICKY_SESSION_COOKIE,
                "sid\n    server x 10.9.9.9:80",
                smuggle('\n'),
            ),
            (STICKY_SESSION_COOKIE, "sid insert", smuggle(' ')),
            (STICKY_SESSION_COOKIE, "sid;show info", smuggle(';')),
            (STICKY_SESSION_COOKIE, "sid#x", smuggle('#')),
        ] {
            let p = parse(&service(&[
                (HOSTS, "a.example"),
                (PORT, "80"),
                (label, value),
            ]))
            .unwrap();
            let errors = p.route.expect_err(value);
            assert!(
                matches!(
                    errors.as_slice(),
                    [LabelError::Invalid { service, label: l, reason: r, .. }]
                        if service == "web" && l == label && **r == reason
                ),
                "{label}={value:?}: {errors:?}"
            );
        }
    }

    #[test]
    fn options_split_into_section_and_server_parts_and_back_unchanged() {
        let options = BackendOptions {
            ip_hash: true,
            sticky_cookie: Some("sid".into()),
            failure_limit: Some(FailureLimit {
                max_fails: 2,
                fail_timeout_ms: 3000,
            }),
            health_check: Some(HealthCheck { interval_ms: 500 }),
            compress: true,
            backend_tls: Some(BackendTls { verify: true }),
            passthrough: false,
            timeout_connect_ms: None,
        };
        assert_eq!(
            BackendOptions::from_parts(options.section(), options.server()),
            options
        );
        assert_eq!(options.section().sticky_cookie.as_deref(), Some("sid"));
        assert_eq!(options.server().failure_limit, options.failure_limit);
    }

    #[test]
    fn a_cookie_name_is_one_to_64_token_characters() {
        for good in ["sid", "session_id-1.x", &"c".repeat(COOKIE_NAME_MAX)] {
            assert!(is_cookie_name(good), "{good}");
        }
        for bad in ["", "a=b", "a,b", "a b", &"c".repeat(COOKIE_NAME_MAX + 1)] {
            assert!(!is_cookie_name(bad), "{bad}");
        }
    }
}
