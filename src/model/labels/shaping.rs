//! Shaping: `hsts`, `response_header.<Name>` and `request_header.<Name>` (see
//! [`crate::model::shaping`] for what HAProxy does with them). A problem with any refuses the
//! route as a whole, so the service keeps its last good routing, and with it its last good
//! headers.

use std::collections::BTreeMap;

use super::keys::{
    HEALTH_HOST, HEALTH_INTERVAL, HEALTH_PATH, HSTS, NAME_PART, REQUEST_HEADER, RESPONSE_HEADER,
    TIMEOUT_CONNECT, TIMEOUT_SERVER, TIMEOUT_TUNNEL,
};
use super::LabelError;
use crate::model::shaping::{
    forbidden, is_token, Direction, Shaping, CUSTOM_BYTES_MAX, CUSTOM_HEADERS_MAX,
    HEADER_VALUE_MAX, HEALTH_PATH_MAX, HSTS_MAX_AGE_MAX, TIMEOUT_CONNECT_MAX_MS,
    TIMEOUT_SERVER_MAX_MS, TIMEOUT_TUNNEL_MAX_MS,
};
use crate::model::Reason;

/// `hsts`: `max-age=<seconds>` then optionally `includeSubDomains` and `preload`, separated
/// by `;` with optional spaces; directive names in any case (RFC 6797, 6.1: "directive names
/// are case-insensitive"), each at most once. The result is written back normalised.
fn parse_hsts(service: &str, value: &str) -> Result<String, LabelError> {
    let refused = || LabelError::invalid(service, HSTS, value, Reason::NotAnHsts);
    let mut max_age = None;
    let (mut subdomains, mut preload) = (false, false);
    for directive in value.split(';').map(|d| d.trim_matches([' ', '\t'])) {
        let lower = directive.to_ascii_lowercase();
        if let Some(n) = lower.strip_prefix("max-age=") {
            let ok = !n.is_empty() && n.len() <= 12 && n.bytes().all(|b| b.is_ascii_digit());
            let n = ok
                .then(|| n.parse::<u64>().ok())
                .flatten()
                .filter(|n| *n <= HSTS_MAX_AGE_MAX)
                .ok_or_else(refused)?;
            if max_age.replace(n).is_some() {
                return Err(refused());
            }
        } else if lower == "includesubdomains" && !subdomains {
            subdomains = true;
        } else if lower == "preload" && !preload {
            preload = true;
        } else {
            return Err(refused());
        }
    }
    let max_age = max_age.ok_or_else(refused)?;
    let mut out = format!("max-age={max_age}");
    if subdomains {
        out.push_str("; includeSubDomains");
    }
    if preload {
        out.push_str("; preload");
    }
    Ok(out)
}

/// A timeout label: a duration (`super::duration`: `250ms`, `90s` or `90`, `5m`, `1h`),
/// trimmed of spaces, the result in milliseconds from 1 to `max_ms` (`max` is how an error
/// says it).
fn parse_timeout(
    service: &str,
    label: &str,
    value: &str,
    max_ms: u64,
    max: &'static str,
) -> Result<u64, LabelError> {
    super::duration::parse_ms(value.trim())
        .filter(|ms| (1..=max_ms).contains(ms))
        .ok_or_else(|| LabelError::invalid(service, label, value, Reason::NotATimeout { max }))
}

/// `health_path`: `/` then printable ASCII without spaces (the request line of HAProxy's
/// check is `GET <path> HTTP/1.0`: a space, CR or LF would split it), trimmed, at most
/// [`HEALTH_PATH_MAX`] bytes. The query is kept.
fn parse_health_path(service: &str, value: &str) -> Result<String, LabelError> {
    let path = value.trim_matches([' ', '\t']);
    let ok = path.starts_with('/')
        && path.len() <= HEALTH_PATH_MAX
        && path.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| path.to_owned())
        .ok_or_else(|| LabelError::invalid(service, HEALTH_PATH, value, Reason::NotAHealthPath))
}

/// `health_host`: a host name (letters, digits, `-`, `.`, at most 253 bytes), optionally
/// followed by `:<port>`; sent as the check's `Host` header.
fn parse_health_host(service: &str, value: &str) -> Result<String, LabelError> {
    let host = value.trim_matches([' ', '\t']);
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    let port_ok = match port {
        None => true,
        Some(p) => !p.starts_with('0') && p.parse::<u16>().is_ok(),
    };
    (name_ok && port_ok)
        .then(|| host.to_ascii_lowercase())
        .ok_or_else(|| LabelError::invalid(service, HEALTH_HOST, value, Reason::NotAHealthHost))
}

/// A header value: trimmed of spaces and tabs, printable ASCII with spaces and tabs, at most
/// [`HEADER_VALUE_MAX`] bytes. Empty: remove the header (`None`).
fn parse_value(service: &str, label: &str, value: &str) -> Result<Option<String>, LabelError> {
    let invalid = |reason| LabelError::invalid(service, label, value, reason);
    let trimmed = value.trim_matches([' ', '\t']);
    if let Some(ch) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ' || *c == '\t'))
    {
        return Err(invalid(Reason::HeaderValueChar { ch }));
    }
    if trimmed.len() > HEADER_VALUE_MAX {
        return Err(invalid(Reason::HeaderValueTooLong { len: trimmed.len() }));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// The name a header label carries: one of the names `direction` offers (fixed template
/// rules), or another token (the Lua action).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum HeaderName {
    Offered(&'static str),
    Custom(String),
}

/// The name of a header label (any case): an offered one, or any other HTTP token that is not
/// one of [`FORBIDDEN_HEADERS`](crate::model::shaping::FORBIDDEN_HEADERS).
fn parse_name(
    service: &str,
    label: &str,
    value: &str,
    name: &str,
    direction: Direction,
) -> Result<HeaderName, LabelError> {
    let lower = name.to_ascii_lowercase();
    if let Some(offered) = direction.offered().iter().find(|n| **n == lower) {
        return Ok(HeaderName::Offered(offered));
    }
    let shown: String = name.chars().take(64).collect();
    let reason = if !is_token(name) {
        Reason::HeaderNotAToken { name: shown }
    } else if lower == "strict-transport-security" {
        Reason::HeaderElsewhere {
            name: shown,
            instead: HSTS,
        }
    } else if let Some(why) = forbidden(&lower) {
        Reason::HeaderForbidden { name: shown, why }
    } else {
        return Ok(HeaderName::Custom(lower));
    };
    Err(LabelError::invalid(service, label, value, reason))
}

/// Whether `shaping` can apply on a service with `passthrough` (`ssl_passthrough=true`): its
/// rules are HTTP rules, which a passed-through connection never meets, so each shaping label
/// there is an error (the route is refused), never silently ignored.
pub(super) fn check_passthrough(
    service: &str,
    passthrough: bool,
    shaping: &Shaping,
    labels: &BTreeMap<String, String>,
    errors: &mut Vec<LabelError>,
) -> bool {
    if !passthrough || shaping.is_empty() {
        return true;
    }
    let prefixes = [
        HSTS,
        RESPONSE_HEADER,
        REQUEST_HEADER,
        TIMEOUT_SERVER,
        TIMEOUT_TUNNEL,
        TIMEOUT_CONNECT,
        HEALTH_PATH,
        HEALTH_HOST,
        HEALTH_INTERVAL,
    ]
    .map(|k| k.strip_suffix(NAME_PART).unwrap_or(k));
    for (label, value) in labels {
        if prefixes.iter().any(|p| label.starts_with(p)) {
            errors.push(LabelError::invalid(
                service,
                label,
                value,
                Reason::NotWithPassthrough,
            ));
        }
    }
    false
}

/// The shaping labels; `None` when one is refused (the errors are in `errors`).
pub(super) fn parse_shaping(
    service: &str,
    labels: &BTreeMap<String, String>,
    errors: &mut Vec<LabelError>,
) -> Option<Shaping> {
    let before = errors.len();
    let mut shaping = Shaping::default();
    if let Some(value) = labels.get(HSTS) {
        match parse_hsts(service, value) {
            Ok(v) => shaping.hsts = Some(v),
            Err(e) => errors.push(e),
        }
    }
    for (label, max_ms, max, field) in [
        (
            TIMEOUT_SERVER,
            TIMEOUT_SERVER_MAX_MS,
            "1h",
            &mut shaping.timeout_server,
        ),
        (
            TIMEOUT_TUNNEL,
            TIMEOUT_TUNNEL_MAX_MS,
            "24h",
            &mut shaping.timeout_tunnel,
        ),
        (
            TIMEOUT_CONNECT,
            TIMEOUT_CONNECT_MAX_MS,
            "60s",
            &mut shaping.timeout_connect,
        ),
    ] {
        if let Some(value) = labels.get(label) {
            match parse_timeout(service, label, value, max_ms, max) {
                Ok(ms) => *field = Some(ms),
                Err(e) => errors.push(e),
            }
        }
    }
    if let Some(value) = labels.get(HEALTH_PATH) {
        match parse_health_path(service, value) {
            Ok(v) => shaping.health_path = Some(v),
            Err(e) => errors.push(e),
        }
    }
    if let Some(value) = labels.get(HEALTH_HOST) {
        match parse_health_host(service, value) {
            Ok(_) if !labels.contains_key(HEALTH_PATH) => errors.push(LabelError::invalid(
                service,
                HEALTH_HOST,
                value,
                Reason::Needs { needs: HEALTH_PATH },
            )),
            Ok(v) => shaping.health_host = Some(v),
            Err(e) => errors.push(e),
        }
    }
    let families = [
        (RESPONSE_HEADER, Direction::Response),
        (REQUEST_HEADER, Direction::Request),
    ];
    let mut seen: BTreeMap<(Direction, HeaderName), &str> = BTreeMap::new();
    for (family, direction) in families {
        let prefix = family.strip_suffix(NAME_PART).unwrap_or(family);
        for (label, value) in labels.range(prefix.to_owned()..) {
            let Some(name) = label.strip_prefix(prefix) else {
                break;
            };
            if name.is_empty() {
                continue;
            }
            let parsed = parse_name(service, label, value, name, direction)
                .and_then(|name| Ok((name, parse_value(service, label, value)?)));
            match parsed {
                Ok((name, v)) => {
                    if let Some(first) = seen.insert((direction, name.clone()), label) {
                        errors.push(LabelError::invalid(
                            service,
                            label,
                            value,
                            Reason::HeaderTwice {
                                first: first.to_owned(),
                                second: label.clone(),
                            },
                        ));
                    }
                    match name {
                        HeaderName::Offered(name) => {
                            shaping.headers.insert((direction, name), v);
                        }
                        HeaderName::Custom(name) => {
                            shaping.custom.insert((direction, name), v);
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        // The one map entry of this direction's other names stays a short command line.
        let custom: Vec<_> = shaping
            .custom
            .iter()
            .filter(|((d, _), _)| *d == direction)
            .collect();
        let bytes: usize = custom
            .iter()
            .map(|((_, n), v)| n.len() + v.as_ref().map_or(0, String::len))
            .sum();
        if custom.len() > CUSTOM_HEADERS_MAX || bytes > CUSTOM_BYTES_MAX {
            // Named after the last label of another name in this family.
            let (label, value) = labels
                .range(prefix.to_owned()..)
                .take_while(|(l, _)| l.starts_with(prefix))
                .filter(|(l, _)| {
                    let name = l[prefix.len()..].to_ascii_lowercase();
                    custom.iter().any(|((_, n), _)| *n == name)
                })
                .last()
                .map(|(l, v)| (l.as_str(), v.as_str()))
                .unwrap_or((family, ""));
            errors.push(LabelError::invalid(
                service,
                label,
                value,
                Reason::HeaderListTooLong {
                    count: custom.len(),
                    bytes,
                },
            ));
        }
    }
    (errors.len() == before).then_some(shaping)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::testing::labels;

    const XFO: &str = "com.docker.lb.response_header.X-Frame-Options";
    const CSP: &str = "com.docker.lb.response_header.Content-Security-Policy";
    const AUTH: &str = "com.docker.lb.request_header.Authorization";

    #[test]
    fn hsts_and_headers_are_read_with_names_folded_and_an_empty_value_removing() {
        let mut errors = Vec::new();
        let shaping = parse_shaping(
            "web",
            &labels(&[
                (HSTS, "max-age=31536000 ;INCLUDESUBDOMAINS; preload"),
                (XFO, " DENY "),
                (CSP, "default-src 'self'; img-src *"),
                (AUTH, ""),
            ]),
            &mut errors,
        )
        .expect("shaping");
        assert_eq!(errors, vec![]);
        assert_eq!(
            shaping.hsts.as_deref(),
            Some("max-age=31536000; includeSubDomains; preload")
        );
        let got: Vec<_> = shaping.headers.into_iter().collect();
        assert_eq!(
            got,
            [
                (
                    (Direction::Response, "content-security-policy"),
                    Some("default-src 'self'; img-src *".to_owned())
                ),
                (
                    (Direction::Response, "x-frame-options"),
                    Some("DENY".to_owned())
                ),
                ((Direction::Request, "authorization"), None),
            ]
        );
    }

    #[test]
    fn bad_shaping_labels_are_errors_naming_service_label_and_reason() {
        for (label, value, reason) in [
            (HSTS, "max-age=abc", "not an HSTS policy"),
            (HSTS, "includeSubDomains", "not an HSTS policy"),
            (HSTS, "max-age=1; max-age=2", "not an HSTS policy"),
            (HSTS, "max-age=315360001", "0..=315360000"),
            (HSTS, "max-age=1; nosniff", "not an HSTS policy"),
            (XFO, "DENY\r\nSet-Cookie: x=1", "character '\\r'"),
            (XFO, "a\nb", "character '\\n'"),
            (XFO, "a\0b", "character '\\0'"),
            (XFO, "caf\u{e9}", "character 'é'"),
            (
                "com.docker.lb.response_header.X-Bad Name",
                "x",
                "is not an HTTP token",
            ),
            (
                "com.docker.lb.response_header.X-Bad:Name",
                "x",
                "is not an HTTP token",
            ),
            (
                "com.docker.lb.request_header.X-B\u{e9}",
                "x",
                "is not an HTTP token",
            ),
            (
                "com.docker.lb.response_header.Content-Length",
                "0",
                "it frames the message",
            ),
            (
                "com.docker.lb.response_header.Transfer-Encoding",
                "chunked",
                "it frames the message",
            ),
            (
                "com.docker.lb.request_header.Forwarded",
                "for=1.2.3.4",
                "is not one a label may set",
            ),
            (
                "com.docker.lb.request_header.Strict-Transport-Security",
                "max-age=1",
                "is set by com.docker.lb.hsts",
            ),
            (
                "com.docker.lb.response_header.Strict-Transport-Security",
                "max-age=1",
                "is set by com.docker.lb.hsts",
            ),
            (
                "com.docker.lb.request_header.Host",
                "evil.example",
                "it routes the request",
            ),
            (
                "com.docker.lb.request_header.X-Forwarded-For",
                "1.2.3.4",
                "swarm-lb sets it",
            ),
            (
                "com.docker.lb.response_header.X-Custom-Thing",
                "a\r\nset-cookie: x=1",
                "character '\\r'",
            ),
        ] {
            let mut errors = Vec::new();
            let got = parse_shaping("web", &labels(&[(label, value)]), &mut errors);
            assert_eq!(got, None, "{label}={value:?}");
            let text = errors.iter().map(|e| e.to_string()).collect::<String>();
            assert!(
                text.starts_with(&format!("service web: label {label}=")),
                "{text}"
            );
            assert!(text.contains(reason), "{label}={value:?}: {text}");
            assert!(!text.contains(['\r', '\n', '\0']), "{text:?}");
        }
        let long = "a".repeat(HEADER_VALUE_MAX + 1);
        let mut errors = Vec::new();
        assert_eq!(
            parse_shaping("web", &labels(&[(XFO, &long)]), &mut errors),
            None
        );
        assert!(
            errors[0].to_string().contains("at most 1024 bytes"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn any_other_token_is_a_header_for_the_lua_action_folded_with_empty_removing() {
        let mut errors = Vec::new();
        let shaping = parse_shaping(
            "web",
            &labels(&[
                ("com.docker.lb.response_header.X-Custom-Thing", " a, b; c "),
                ("com.docker.lb.response_header.x-odd!#$%&'*+.^_`|~", "1"),
                ("com.docker.lb.response_header.Set-Cookie", ""),
                ("com.docker.lb.request_header.X-Tenant", "blue"),
                (XFO, "DENY"),
            ]),
            &mut errors,
        )
        .expect("shaping");
        assert_eq!(errors, vec![]);
        let got: Vec<_> = shaping.custom.into_iter().collect();
        assert_eq!(
            got,
            [
                ((Direction::Response, "set-cookie".to_owned()), None),
                (
                    (Direction::Response, "x-custom-thing".to_owned()),
                    Some("a, b; c".to_owned())
                ),
                (
                    (Direction::Response, "x-odd!#$%&'*+.^_`|~".to_owned()),
                    Some("1".to_owned())
                ),
                (
                    (Direction::Request, "x-tenant".to_owned()),
                    Some("blue".to_owned())
                ),
            ]
        );
        // The offered names keep their fixed rules.
        assert_eq!(shaping.headers.len(), 1);
        // The same other name twice, in two cases.
        let mut errors = Vec::new();
        let twice = labels(&[
            ("com.docker.lb.response_header.X-Custom-Thing", "1"),
            ("com.docker.lb.response_header.x-custom-thing", "2"),
        ]);
        assert_eq!(parse_shaping("web", &twice, &mut errors), None);
        assert!(errors[0].to_string().contains("name the same header"));
    }

    #[test]
    fn too_many_or_too_long_other_headers_in_one_direction_are_an_error() {
        let many: Vec<(String, String)> = (0..=CUSTOM_HEADERS_MAX)
            .map(|i| {
                (
                    format!("com.docker.lb.response_header.X-H{i:02}"),
                    "v".to_owned(),
                )
            })
            .collect();
        let long: Vec<(String, String)> = (0..4)
            .map(|i| {
                (
                    format!("com.docker.lb.request_header.X-L{i}"),
                    "v".repeat(1000),
                )
            })
            .collect();
        for (all, reason) in [(many, "17 headers"), (long, "4016 bytes")] {
            let refs: Vec<(&str, &str)> =
                all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut errors = Vec::new();
            assert_eq!(parse_shaping("web", &labels(&refs), &mut errors), None);
            let text = errors[0].to_string();
            assert!(
                text.contains(reason) && text.contains("at most 16"),
                "{text}"
            );
            let last = &all.last().unwrap().0;
            assert!(
                text.starts_with(&format!("service web: label {last}=")),
                "{text}"
            );
        }
    }

    #[test]
    fn timeouts_are_read_in_ms_s_m_or_h_and_bounded() {
        for (label, value, ms) in [
            (TIMEOUT_SERVER, "90s", 90_000),
            (TIMEOUT_SERVER, "90", 90_000),
            (TIMEOUT_SERVER, "5m", 300_000),
            (TIMEOUT_SERVER, "250ms", 250),
            (TIMEOUT_SERVER, "1h", 3_600_000),
            (TIMEOUT_TUNNEL, "24h", 86_400_000),
            (TIMEOUT_CONNECT, "500ms", 500),
            (TIMEOUT_CONNECT, "60s", 60_000),
            (TIMEOUT_CONNECT, "1m", 60_000),
        ] {
            let mut errors = Vec::new();
            let got = parse_shaping("web", &labels(&[(label, value)]), &mut errors).unwrap();
            let got = match label {
                TIMEOUT_SERVER => got.timeout_server,
                TIMEOUT_CONNECT => got.timeout_connect,
                _ => got.timeout_tunnel,
            };
            assert_eq!(got, Some(ms), "{label}={value}");
        }
        for (label, value) in [
            (TIMEOUT_SERVER, "61m"),
            (TIMEOUT_SERVER, "0s"),
            (TIMEOUT_SERVER, "-5s"),
            (TIMEOUT_SERVER, "1.5s"),
            (TIMEOUT_SERVER, "5 minutes"),
            (TIMEOUT_TUNNEL, "25h"),
            (TIMEOUT_TUNNEL, "99999999999999h"),
            (TIMEOUT_CONNECT, "61s"),
            (TIMEOUT_CONNECT, "0ms"),
            (TIMEOUT_CONNECT, "2m"),
        ] {
            let mut errors = Vec::new();
            assert_eq!(
                parse_shaping("web", &labels(&[(label, value)]), &mut errors),
                None
            );
            let text = errors[0].to_string();
            assert!(
                text.starts_with(&format!("service web: label {label}="))
                    && text.contains("not a timeout"),
                "{text}"
            );
        }
    }

    #[test]
    fn shaping_on_a_passthrough_service_is_refused_naming_each_label() {
        let all = labels(&[
            (XFO, "DENY"),
            (TIMEOUT_SERVER, "5s"),
            ("com.docker.lb.port", "80"),
        ]);
        let mut errors = Vec::new();
        let shaping = parse_shaping("pt", &all, &mut errors).unwrap();
        assert!(check_passthrough("pt", false, &shaping, &all, &mut errors));
        assert!(!check_passthrough("pt", true, &shaping, &all, &mut errors));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0]
            .to_string()
            .contains("not applied with ssl_passthrough"));
    }

    #[test]
    fn a_health_path_and_host_are_read_trimmed_and_bad_ones_are_errors_naming_the_label() {
        let mut errors = Vec::new();
        let got = parse_shaping(
            "web",
            &labels(&[
                (HEALTH_PATH, " /healthz?full=1&x=%20 "),
                (HEALTH_HOST, "Check.Example:8080"),
            ]),
            &mut errors,
        )
        .expect("shaping");
        assert_eq!(errors, vec![]);
        assert_eq!(got.health_path.as_deref(), Some("/healthz?full=1&x=%20"));
        assert_eq!(got.health_host.as_deref(), Some("check.example:8080"));
        let long = format!("/{}", "a".repeat(HEALTH_PATH_MAX));
        for (label, value, reason) in [
            (HEALTH_PATH, "healthz", "not a health check path"),
            (HEALTH_PATH, "", "not a health check path"),
            (HEALTH_PATH, "/a b", "not a health check path"),
            (HEALTH_PATH, "/a\r\nHost: evil", "not a health check path"),
            (HEALTH_PATH, "/caf\u{e9}", "not a health check path"),
            (HEALTH_PATH, long.as_str(), "not a health check path"),
            (HEALTH_HOST, "a b", "not a host name"),
            (HEALTH_HOST, "a.example:0", "not a host name"),
            (HEALTH_HOST, "a.example:99999", "not a host name"),
            (HEALTH_HOST, "a.example\r\nX: y", "not a host name"),
        ] {
            let mut all = vec![(label, value)];
            if label == HEALTH_HOST {
                all.push((HEALTH_PATH, "/"));
            }
            let mut errors = Vec::new();
            assert_eq!(parse_shaping("web", &labels(&all), &mut errors), None);
            let text = errors.iter().map(|e| e.to_string()).collect::<String>();
            assert!(
                text.starts_with(&format!("service web: label {label}=")) && text.contains(reason),
                "{label}={value:?}: {text}"
            );
            assert!(!text.contains(['\r', '\n']), "{text:?}");
        }
        let mut errors = Vec::new();
        let lone = labels(&[(HEALTH_HOST, "a.example")]);
        assert_eq!(parse_shaping("web", &lone, &mut errors), None);
        assert!(
            errors[0]
                .to_string()
                .contains("needs com.docker.lb.health_path"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn one_header_named_twice_in_two_cases_is_an_error() {
        let mut errors = Vec::new();
        let got = parse_shaping(
            "web",
            &labels(&[
                (XFO, "DENY"),
                ("com.docker.lb.response_header.x-frame-options", "x"),
            ]),
            &mut errors,
        );
        assert_eq!(got, None);
        assert!(
            errors[0].to_string().contains("name the same header"),
            "{}",
            errors[0]
        );
    }
}
