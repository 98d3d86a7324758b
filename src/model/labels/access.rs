//! Access: `ip_allow` and `ip_deny`, who may reach the service by client address,
//! `rate_limit` / `rate_limit_burst`, how often, and `auth_basic` / `auth_realm`, as whom. A
//! problem with any refuses the route as a whole, so the service keeps its last good routing,
//! and with it its last good policy: a broken list never opens the service up, a broken rate
//! never lifts the limit, a broken auth label never drops the password. (What the secret holds
//! is checked by the reconcile pass, which has the file: `reconcile/auth.rs`.)

use std::collections::BTreeMap;

use super::keys::{
    ACCESS_BLOCKS_MAX, AUTH_BASIC, AUTH_FORWARD, AUTH_FORWARD_RESPONSE_HEADERS, AUTH_REALM,
    FORWARD_HEADERS_MAX, FORWARD_URL_MAX, IP_ALLOW, IP_DENY, RATE_LIMIT, RATE_LIMIT_BURST,
    RATE_MAX, REALM_MAX,
};
use super::{bad_char, parse_secret_name, LabelError, Reader};
use crate::model::access::{parse_cidr_list, AccessPolicy, AuthBasic, ForwardAuth, Per, RateLimit};
use crate::model::{Host, Reason};

/// One list label: addresses and CIDRs, comma-separated (see [`parse_cidr_list`]), at least
/// one and at most [`ACCESS_BLOCKS_MAX`].
fn parse_list(
    service: &str,
    label: &str,
    value: &str,
) -> Result<Vec<crate::model::access::Cidr>, LabelError> {
    let invalid = |reason| LabelError::invalid(service, label, value, reason);
    // Spaces around commas are how lists are written by hand; any other syntax is refused.
    let compact: String = value.chars().filter(|c| *c != ' ').collect();
    if let Some(reason) = bad_char(label, &compact) {
        return Err(invalid(reason));
    }
    let list = parse_cidr_list(value).map_err(|e| invalid(Reason::NotAnAddressBlock(e)))?;
    if list.is_empty() {
        return Err(invalid(Reason::Empty {
            expected: "list at least one address or CIDR (remove the label to drop the list)",
        }));
    }
    if list.len() > ACCESS_BLOCKS_MAX {
        return Err(invalid(Reason::TooManyBlocks { count: list.len() }));
    }
    Ok(list)
}

/// Whether `policy` can be enforced on a service with `passthrough` (`ssl_passthrough=true`):
/// its rules are HTTP rules, which a passed-through connection never meets, so a policy there
/// is an error on each of its labels (the route is refused: fail closed), never ignored.
pub(super) fn check_passthrough(
    service: &str,
    passthrough: bool,
    policy: &AccessPolicy,
    errors: &mut Vec<LabelError>,
) -> bool {
    let unset = policy.rate.is_none() && policy.auth.is_none() && policy.forward.is_none();
    if !passthrough || (policy.is_open() && unset) {
        return true;
    }
    let set = [IP_ALLOW, IP_DENY, RATE_LIMIT, AUTH_BASIC, AUTH_FORWARD]
        .into_iter()
        .filter_map(|label| Some((label, policy_label(policy, label)?)));
    for (label, value) in set {
        errors.push(LabelError::invalid(
            service,
            label,
            &value,
            Reason::NotWithPassthrough,
        ));
    }
    false
}

/// The value of `label` in `policy`, as written back, if the policy uses it.
fn policy_label(policy: &AccessPolicy, label: &str) -> Option<String> {
    let join = |blocks: &[crate::model::access::Cidr]| {
        blocks
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match label {
        IP_ALLOW => policy.allow.as_deref().map(join),
        IP_DENY => (!policy.deny.is_empty()).then(|| join(&policy.deny)),
        RATE_LIMIT => policy.rate.map(|r| {
            let unit = match r.per {
                Per::Second => "s",
                Per::Minute => "m",
            };
            format!("{}/{unit}", r.requests)
        }),
        AUTH_BASIC => policy.auth.as_ref().map(|a| a.secret.clone()),
        AUTH_FORWARD => policy.forward.as_ref().map(|f| f.url.clone()),
        _ => None,
    }
}

/// A whole number 0..=[`RATE_MAX`] in plain decimal.
fn count(text: &str) -> Option<u32> {
    let digits = !text.is_empty() && text.len() <= 7 && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .filter(|n| *n <= RATE_MAX)
}

/// `rate_limit`: `<n>/s` or `<n>/m` (also `sec`/`second`, `min`/`minute`), n 1..=[`RATE_MAX`].
fn parse_rate(service: &str, value: &str) -> Result<(u32, Per), LabelError> {
    let refused = || LabelError::invalid(service, RATE_LIMIT, value, Reason::NotARate);
    let (n, unit) = value.trim().split_once('/').ok_or_else(refused)?;
    let per = match unit {
        "s" | "sec" | "second" => Per::Second,
        "m" | "min" | "minute" => Per::Minute,
        _ => return Err(refused()),
    };
    match count(n) {
        Some(n) if n > 0 => Ok((n, per)),
        _ => Err(refused()),
    }
}

/// `auth_realm`: 1..=[`REALM_MAX`] printable ASCII characters without `"` or `\\` (it is
/// sent inside the quoted string of `WWW-Authenticate: Basic realm="..."`, RFC 7617 2; refusing
/// the two characters that would need escaping there keeps it one plain quoted string).
fn parse_realm(service: &str, value: &str) -> Result<String, LabelError> {
    let ok = !value.is_empty()
        && value.len() <= REALM_MAX
        && value
            .chars()
            .all(|c| matches!(c, ' '..='~') && c != '"' && c != '\\');
    match ok {
        true => Ok(value.to_owned()),
        false => Err(LabelError::invalid(
            service,
            AUTH_REALM,
            value,
            Reason::NotARealm,
        )),
    }
}

/// `auth_basic` and `auth_realm`: `Ok(None)` without them; the realm defaults to the service
/// name.
fn parse_auth(
    service: &str,
    labels: &BTreeMap<String, String>,
    errors: &mut Vec<LabelError>,
) -> Option<Option<AuthBasic>> {
    let read = Reader { service, labels };
    let secret = read.optional(AUTH_BASIC, errors, |s, v| {
        parse_secret_name(s, AUTH_BASIC, v.trim())
    });
    let realm = read.optional(AUTH_REALM, errors, parse_realm);
    match (secret?, realm?) {
        (Some(secret), realm) => Some(Some(AuthBasic {
            secret,
            realm: realm.unwrap_or_else(|| service.to_owned()),
        })),
        (None, Some(realm)) => {
            errors.push(LabelError::invalid(
                service,
                AUTH_REALM,
                &realm,
                Reason::RealmWithoutAuth,
            ));
            None
        }
        (None, None) => Some(None),
    }
}

/// `auth_forward`: `http://<host>[:<port>][<path>][?<query>]`, nothing else. The host is a
/// DNS name (a Swarm service name on a network HAProxy shares, resolved by HAProxy's HTTP
/// client) or an IPv4 or `[IPv6]` literal. Refused: other schemes, `https` (see the reason),
/// credentials (`user:pass@`), fragments, and any character that is not plain URL text.
/// The value is kept as written.
fn parse_forward_url(service: &str, value: &str) -> Result<String, LabelError> {
    let refused = |why| {
        LabelError::invalid(
            service,
            AUTH_FORWARD,
            value,
            Reason::NotAForwardAuthUrl { why },
        )
    };
    if let Some(reason) = bad_char(AUTH_FORWARD, value) {
        return Err(LabelError::invalid(service, AUTH_FORWARD, value, reason));
    }
    if value.is_empty() || value.len() > FORWARD_URL_MAX {
        return Err(refused("1 to 512 characters"));
    }
    if value
        .bytes()
        .any(|b| matches!(b, b'<' | b'>' | b'{' | b'}' | b'|' | b'^'))
    {
        return Err(refused("characters < > { } | ^ [ ] are not URL text"));
    }
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(refused(
            "https is not offered: HAProxy asks the auth service over the network it shares \
             with it (an overlay; make it encrypted for privacy), in plain http://",
        ));
    }
    let Some(rest) = value.strip_prefix("http://") else {
        return Err(refused("must start with http://"));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(refused(
            "credentials in the URL are not taken (user:password@)",
        ));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| refused("an IPv6 address must be [written in brackets]"))?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| refused("not an IPv6 address in [ ]"))?;
            (
                None,
                after
                    .strip_prefix(':')
                    .map(Some)
                    .unwrap_or(if after.is_empty() { None } else { Some("") }),
            )
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(authority), None),
        },
    };
    if let Some(host) = host {
        let ok = host.parse::<std::net::Ipv4Addr>().is_ok()
            || (Host::parse(host).is_ok() && !host.ends_with('.'));
        if host.is_empty() || !ok {
            return Err(refused("the host must be a DNS name or an IP address"));
        }
    }
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !ok {
            return Err(refused("the port must be a number from 1 to 65535"));
        }
    }
    if tail.contains(['[', ']']) {
        return Err(refused("characters < > { } | ^ [ ] are not URL text"));
    }
    let bytes = tail.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(refused("a % must start an escape of two hex digits"));
            }
        }
    }
    Ok(value.to_owned())
}

/// Headers that are the connection's or the message's, or the client's own identity
/// (its cookies, its address as swarm-lb set it), never an auth service's to set: copying
/// `Cookie` would replace the client's cookies, `X-Forwarded-For` the address the task trusts.
const NOT_COPIED: [&str; 14] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "cookie",
    "set-cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "forwarded",
];

/// `auth_forward_response_headers`: header names, comma-separated (spaces around commas
/// taken), each `[A-Za-z0-9-]`, at most [`FORWARD_HEADERS_MAX`], none of [`NOT_COPIED`];
/// duplicates (in any case) dropped, the first spelling kept.
fn parse_forward_headers(service: &str, value: &str) -> Result<Vec<String>, LabelError> {
    let refused = || {
        LabelError::invalid(
            service,
            AUTH_FORWARD_RESPONSE_HEADERS,
            value,
            Reason::NotAHeaderList,
        )
    };
    let mut out: Vec<String> = Vec::new();
    for item in value.split(',').map(|i| i.trim_matches(' ')) {
        let ok = !item.is_empty()
            && item.len() <= 64
            && item.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !NOT_COPIED.contains(&item.to_ascii_lowercase().as_str());
        if !ok {
            return Err(refused());
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(item)) {
            out.push(item.to_owned());
        }
    }
    if out.len() > FORWARD_HEADERS_MAX {
        return Err(refused());
    }
    Ok(out)
}

/// `auth_forward` and `auth_forward_response_headers`: `Some(None)` without them.
fn parse_forward(
    service: &str,
    labels: &BTreeMap<String, String>,
    errors: &mut Vec<LabelError>,
) -> Option<Option<ForwardAuth>> {
    let read = Reader { service, labels };
    let url = read.optional(AUTH_FORWARD, errors, parse_forward_url);
    let headers = read.optional(AUTH_FORWARD_RESPONSE_HEADERS, errors, parse_forward_headers);
    match (url?, headers?) {
        (Some(url), headers) => Some(Some(ForwardAuth {
            url,
            response_headers: headers.unwrap_or_default(),
        })),
        (None, Some(_)) => {
            let value = labels
                .get(AUTH_FORWARD_RESPONSE_HEADERS)
                .map(String::as_str)
                .unwrap_or("");
            errors.push(LabelError::invalid(
                service,
                AUTH_FORWARD_RESPONSE_HEADERS,
                value,
                Reason::HeadersWithoutForwardAuth,
            ));
            None
        }
        (None, None) => Some(None),
    }
}

/// The eight labels; `None` when one is refused (the errors are in `errors`).
pub(super) fn parse_access(
    service: &str,
    labels: &BTreeMap<String, String>,
    errors: &mut Vec<LabelError>,
) -> Option<AccessPolicy> {
    let read = Reader { service, labels };
    let allow = read.optional(IP_ALLOW, errors, |s, v| parse_list(s, IP_ALLOW, v));
    let deny = read.optional(IP_DENY, errors, |s, v| parse_list(s, IP_DENY, v));
    let rate = read.optional(RATE_LIMIT, errors, parse_rate);
    let burst = read.optional(RATE_LIMIT_BURST, errors, |s, v| {
        count(v.trim())
            .ok_or_else(|| LabelError::invalid(s, RATE_LIMIT_BURST, v, Reason::NotABurst))
    });
    let auth = parse_auth(service, labels, errors);
    let forward = parse_forward(service, labels, errors);
    if let (Some(Some(_)), Some(Some(f))) = (&auth, &forward) {
        errors.push(LabelError::invalid(
            service,
            AUTH_FORWARD,
            &f.url,
            Reason::BasicAndForwardAuth,
        ));
        return None;
    }
    let rate = match (rate?, burst?) {
        (Some((requests, per)), burst) => Some(RateLimit {
            requests,
            per,
            burst: burst.unwrap_or(0),
        }),
        (None, Some(_)) => {
            let value = labels
                .get(RATE_LIMIT_BURST)
                .map(String::as_str)
                .unwrap_or("");
            errors.push(LabelError::invalid(
                service,
                RATE_LIMIT_BURST,
                value,
                Reason::BurstWithoutRate,
            ));
            return None;
        }
        (None, None) => None,
    };
    Some(AccessPolicy {
        allow: allow?,
        deny: deny?.unwrap_or_default(),
        rate,
        auth: auth?,
        forward: forward?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::testing::labels;

    /// `pairs` give no policy, and the error names service `web`, `label` and `reason`.
    fn assert_refused(pairs: &[(&str, &str)], label: &str, reason: &str) {
        let mut errors = Vec::new();
        assert_eq!(
            parse_access("web", &labels(pairs), &mut errors),
            None,
            "{pairs:?}"
        );
        let text = errors.iter().map(|e| e.to_string()).collect::<String>();
        assert!(
            text.starts_with(&format!("service web: label {label}=")),
            "{text}"
        );
        assert!(text.contains(reason), "{pairs:?}: {text}");
    }

    #[test]
    fn allow_and_deny_lists_of_both_families_are_read() {
        let mut errors = Vec::new();
        let policy = parse_access(
            "web",
            &labels(&[
                (IP_ALLOW, "10.0.0.0/8, 2001:db8::/32"),
                (IP_DENY, "10.1.2.3"),
            ]),
            &mut errors,
        )
        .expect("policy");
        assert_eq!(errors, vec![]);
        let shown: Vec<String> = policy
            .allow
            .expect("allow list")
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(policy.deny.len(), 1);
    }

    #[test]
    fn a_rate_per_second_or_minute_with_a_burst_is_read() {
        let mut errors = Vec::new();
        let policy = parse_access(
            "web",
            &labels(&[(RATE_LIMIT, "20/m"), (RATE_LIMIT_BURST, "5")]),
            &mut errors,
        )
        .expect("policy");
        assert_eq!(
            policy.rate,
            Some(RateLimit {
                requests: 20,
                per: Per::Minute,
                burst: 5
            })
        );
        let policy = parse_access("web", &labels(&[(RATE_LIMIT, "7/s")]), &mut errors);
        assert_eq!(policy.and_then(|p| p.rate).map(|r| r.burst), Some(0));
        assert_eq!(errors, vec![]);
    }

    #[test]
    fn a_rate_of_zero_or_nonsense_or_a_lone_burst_is_an_error_naming_the_label() {
        for (pairs, label, reason) in [
            (&[(RATE_LIMIT, "0/s")][..], RATE_LIMIT, "not a rate"),
            (&[(RATE_LIMIT, "10")][..], RATE_LIMIT, "not a rate"),
            (&[(RATE_LIMIT, "10/h")][..], RATE_LIMIT, "not a rate"),
            (&[(RATE_LIMIT, "-1/s")][..], RATE_LIMIT, "not a rate"),
            (&[(RATE_LIMIT, "1000001/s")][..], RATE_LIMIT, "1..=1000000"),
            (&[(RATE_LIMIT, "fast")][..], RATE_LIMIT, "not a rate"),
            (
                &[(RATE_LIMIT, "5/s"), (RATE_LIMIT_BURST, "x")][..],
                RATE_LIMIT_BURST,
                "not a burst",
            ),
            (
                &[(RATE_LIMIT_BURST, "5")][..],
                RATE_LIMIT_BURST,
                "needs a rate",
            ),
        ] {
            assert_refused(pairs, label, reason);
        }
    }

    #[test]
    fn a_policy_on_a_passthrough_service_is_refused_naming_each_label_never_ignored() {
        let mut errors = Vec::new();
        let policy = parse_access(
            "pt",
            &labels(&[(IP_ALLOW, "10.0.0.0/8"), (RATE_LIMIT, "5/s")]),
            &mut errors,
        )
        .expect("policy");
        assert!(check_passthrough("pt", false, &policy, &mut errors));
        assert!(!check_passthrough("pt", true, &policy, &mut errors));
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].starts_with("service pt: label com.docker.lb.ip_allow=\"10.0.0.0/8\""));
        assert!(text[1].contains("rate_limit=\"5/s\": not applied with ssl_passthrough"));
        let open = AccessPolicy::default();
        assert!(check_passthrough("pt", true, &open, &mut Vec::new()));
    }

    #[test]
    fn auth_basic_names_a_secret_and_the_realm_defaults_to_the_service_name() {
        let mut errors = Vec::new();
        let got = parse_access("web", &labels(&[(AUTH_BASIC, "web-users.v1")]), &mut errors);
        assert_eq!(
            got.and_then(|p| p.auth),
            Some(AuthBasic {
                secret: "web-users.v1".into(),
                realm: "web".into()
            })
        );
        let got = parse_access(
            "web",
            &labels(&[(AUTH_BASIC, "u"), (AUTH_REALM, "Staff area (v2)")]),
            &mut errors,
        );
        assert_eq!(
            got.and_then(|p| p.auth).map(|a| a.realm),
            Some("Staff area (v2)".into())
        );
        assert_eq!(errors, vec![]);
    }

    #[test]
    fn a_bad_secret_name_or_realm_or_a_lone_realm_is_an_error_naming_the_label() {
        let long = "r".repeat(REALM_MAX + 1);
        for (pairs, label, reason) in [
            (
                &[(AUTH_BASIC, "")][..],
                AUTH_BASIC,
                "not a Docker secret name",
            ),
            (
                &[(AUTH_BASIC, "a:b")][..],
                AUTH_BASIC,
                "not a Docker secret name",
            ),
            (
                &[(AUTH_BASIC, "u"), (AUTH_REALM, "say \"hi\"")][..],
                AUTH_REALM,
                "not a realm",
            ),
            (
                &[(AUTH_BASIC, "u"), (AUTH_REALM, "a\\b")][..],
                AUTH_REALM,
                "not a realm",
            ),
            (
                &[(AUTH_BASIC, "u"), (AUTH_REALM, "tab\there")][..],
                AUTH_REALM,
                "not a realm",
            ),
            (
                &[(AUTH_BASIC, "u"), (AUTH_REALM, "")][..],
                AUTH_REALM,
                "not a realm",
            ),
            (
                &[(AUTH_BASIC, "u"), (AUTH_REALM, long.as_str())][..],
                AUTH_REALM,
                "not a realm",
            ),
            (
                &[(AUTH_REALM, "staff")][..],
                AUTH_REALM,
                "needs a user list",
            ),
        ] {
            assert_refused(pairs, label, reason);
        }
    }

    #[test]
    fn basic_auth_on_a_passthrough_service_is_refused_naming_the_label() {
        let mut errors = Vec::new();
        let policy =
            parse_access("pt", &labels(&[(AUTH_BASIC, "u")]), &mut errors).expect("policy");
        assert!(!check_passthrough("pt", true, &policy, &mut errors));
        assert!(
            errors[0]
                .to_string()
                .contains("auth_basic=\"u\": not applied with ssl_passthrough"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn auth_forward_takes_http_urls_to_a_name_or_an_address_with_the_headers_named() {
        for url in [
            "http://authelia:9091/api/verify?rd=https://login.example/",
            "http://oauth2-proxy:4180/oauth2/auth",
            "http://10.0.0.5/auth",
            "http://[2001:db8::1]:8080/x%20y",
            "http://auth.example",
        ] {
            let mut errors = Vec::new();
            let got = parse_access(
                "web",
                &labels(&[
                    (AUTH_FORWARD, url),
                    (
                        AUTH_FORWARD_RESPONSE_HEADERS,
                        "Remote-User, Remote-Groups,remote-user",
                    ),
                ]),
                &mut errors,
            );
            assert_eq!(errors, vec![], "{url}");
            assert_eq!(
                got.and_then(|p| p.forward),
                Some(ForwardAuth {
                    url: url.to_owned(),
                    response_headers: vec!["Remote-User".into(), "Remote-Groups".into()],
                }),
                "{url}"
            );
        }
        let mut errors = Vec::new();
        let got = parse_access(
            "web",
            &labels(&[(AUTH_FORWARD, "http://a:1/")]),
            &mut errors,
        );
        assert_eq!(
            got.and_then(|p| p.forward).map(|f| f.response_headers),
            Some(vec![])
        );
    }

    #[test]
    fn a_hostile_or_unsupported_auth_forward_value_is_an_error_naming_the_label_and_the_reason() {
        let long = format!("http://a/{}", "x".repeat(FORWARD_URL_MAX));
        for (value, reason) in [
            ("https://auth.example/", "https is not offered"),
            ("HTTPS://auth.example/", "https is not offered"),
            ("ftp://auth.example/", "must start with http://"),
            ("auth.example/verify", "must start with http://"),
            ("http://alice:pw@auth.example/", "credentials"),
            ("http://auth.example/a b", "character ' '"),
            (
                "http://auth.example/\nserver x 1.2.3.4:80",
                "character '\\n'",
            ),
            ("http://auth.example/#frag", "character '#'"),
            ("http://auth.example/\"x", "character '\"'"),
            ("http://auth.example/<x>", "not URL text"),
            ("http://auth.example:0/", "port"),
            ("http://auth.example:99999/", "port"),
            ("http://auth.example:/", "port"),
            ("http://a..b/", "host"),
            ("http:///verify", "host"),
            ("http://[::1/", "brackets"),
            ("http://[zz]/", "IPv6"),
            ("http://auth.example/%zz", "escape"),
            ("", "1 to 512"),
            (long.as_str(), "1 to 512"),
        ] {
            assert_refused(&[(AUTH_FORWARD, value)], AUTH_FORWARD, reason);
        }
        let many = (0..=FORWARD_HEADERS_MAX)
            .map(|i| format!("X-H{i}"))
            .collect::<Vec<_>>()
            .join(",");
        for value in [
            "Host",
            "content-length",
            "X Bad",
            "X-A,,X-B",
            "",
            "X_A",
            many.as_str(),
            // The client's own identity: its cookies, the address the task trusts.
            "Remote-User,Cookie",
            "Set-Cookie",
            "X-Forwarded-For",
            "forwarded",
        ] {
            assert_refused(
                &[
                    (AUTH_FORWARD, "http://a/"),
                    (AUTH_FORWARD_RESPONSE_HEADERS, value),
                ],
                AUTH_FORWARD_RESPONSE_HEADERS,
                "not a list of header names",
            );
        }
        assert_refused(
            &[(AUTH_FORWARD_RESPONSE_HEADERS, "X-User")],
            AUTH_FORWARD_RESPONSE_HEADERS,
            "set com.docker.lb.auth_forward too",
        );
        assert_refused(
            &[(AUTH_FORWARD, "http://a/"), (AUTH_BASIC, "users")],
            AUTH_FORWARD,
            "choose one",
        );
    }

    #[test]
    fn forward_auth_on_a_passthrough_service_is_refused_naming_the_label() {
        let mut errors = Vec::new();
        let policy = parse_access("pt", &labels(&[(AUTH_FORWARD, "http://a/")]), &mut errors)
            .expect("policy");
        assert!(!check_passthrough("pt", true, &policy, &mut errors));
        assert!(
            errors[0]
                .to_string()
                .contains("auth_forward=\"http://a/\": not applied with ssl_passthrough"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn no_label_is_no_policy() {
        let mut errors = Vec::new();
        assert_eq!(
            parse_access("web", &labels(&[]), &mut errors),
            Some(AccessPolicy::default())
        );
    }

    #[test]
    fn a_bad_list_is_an_error_naming_service_label_and_reason_and_no_policy() {
        for (label, value, reason) in [
            (IP_ALLOW, "10.0.0.0/33", "prefix length"),
            (
                IP_ALLOW,
                "10.0.0.0/8,example.com",
                "\"example.com\" is not an IPv4",
            ),
            (IP_DENY, " , ", "empty"),
            (IP_DENY, "10.0.0.1;x", "character ';'"),
            (IP_ALLOW, "10.0.0.1\t", "character '\\t'"),
        ] {
            let mut errors = Vec::new();
            let got = parse_access("web", &labels(&[(label, value)]), &mut errors);
            assert_eq!(got, None, "{label}={value:?}");
            let text = errors.iter().map(|e| e.to_string()).collect::<String>();
            assert!(
                text.starts_with(&format!("service web: label {label}=")),
                "{text}"
            );
            assert!(text.contains(reason), "{label}={value:?}: {text}");
        }
        let many = (0..=ACCESS_BLOCKS_MAX)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect::<Vec<_>>()
            .join(",");
        let mut errors = Vec::new();
        assert_eq!(
            parse_access("web", &labels(&[(IP_ALLOW, &many)]), &mut errors),
            None
        );
        assert!(
            errors[0].to_string().contains("at most 1000"),
            "{}",
            errors[0]
        );
    }
}
