//! Routing on a service's hosts: `context_root` (and its rewrite), `websocket_endpoints`,
//! `weight` (canary shares) and `redirects` (with `redirect_code`).

use super::errors::shown;
use super::keys::{CONTEXT_ROOT, REDIRECTS, REDIRECT_CODE, WEIGHT, WEIGHT_MAX};
use super::{bad_char, check_chars, list_items, LabelError};
use crate::model::{ContextRoot, Host, Reason, UrlError, REDIRECT_CODES};

/// One `source,target` pair of `com.docker.lb.redirects`: requests for `http://<host><path>`
/// (path on segment boundaries, `None` for all of the host) answer `code` with a `Location`
/// of `target` followed by the rest of the path and the query.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Redirect {
    pub host: Host,
    pub path: Option<ContextRoot>,
    /// `scheme://host[:port][/path]`, no trailing slash.
    pub target: String,
    /// The target's host and path, to find loops.
    pub target_host: Host,
    pub target_path: Option<ContextRoot>,
    pub code: u16,
}

/// Checks comma-separated URL paths, each starting with `/`. Like host lists, items are
/// trimmed of spaces and tabs; `Ok(true)`: empty items were skipped.
pub(super) fn check_paths(service: &str, label: &str, value: &str) -> Result<bool, LabelError> {
    let mut skipped_empty = false;
    for path in list_items(value) {
        if path.is_empty() {
            skipped_empty = true;
            continue;
        }
        check_chars(service, label, path).map_err(|e| match e {
            LabelError::Invalid { reason, .. } => LabelError::invalid(
                service,
                label,
                value,
                Reason::InPath {
                    path: shown(path),
                    why: reason,
                },
            ),
            other => other,
        })?;
        if !path.starts_with('/') {
            return Err(LabelError::invalid(
                service,
                label,
                value,
                Reason::PathNotAbsolute { path: shown(path) },
            ));
        }
    }
    Ok(skipped_empty)
}

/// `com.docker.lb.context_root`: a path prefix such as `/app` or `/api/v1` (see
/// [`ContextRoot`]); `/` alone is no context root and is refused.
pub fn parse_context_root(service: &str, value: &str) -> Result<ContextRoot, LabelError> {
    check_chars(service, CONTEXT_ROOT, value)?;
    ContextRoot::parse(value)
        .map_err(|e| LabelError::invalid(service, CONTEXT_ROOT, value, Reason::NotAContextRoot(e)))
}

/// `com.docker.lb.weight`: a whole number 0..=[`WEIGHT_MAX`] (0: no traffic).
pub fn parse_weight(service: &str, value: &str) -> Result<u32, LabelError> {
    check_chars(service, WEIGHT, value)?;
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    match value.parse::<u32>() {
        Ok(w) if plain && w <= WEIGHT_MAX => Ok(w),
        _ => Err(LabelError::invalid(
            service,
            WEIGHT,
            value,
            Reason::NotAWeight,
        )),
    }
}

/// `com.docker.lb.redirect_code`: 301, 302, 307 or 308.
pub fn parse_redirect_code(service: &str, value: &str) -> Result<u16, LabelError> {
    check_chars(service, REDIRECT_CODE, value)?;
    match value.parse::<u16>() {
        Ok(code) if REDIRECT_CODES.contains(&code) && !value.starts_with('0') => Ok(code),
        _ => Err(LabelError::invalid(
            service,
            REDIRECT_CODE,
            value,
            Reason::NotARedirectCode,
        )),
    }
}

/// `com.docker.lb.redirects`: `source,target` pairs separated by `;` (Interlock's syntax),
/// each `http://host[/path]` -> `http[s]://host[:port][/path]`. Items are trimmed of spaces
/// and tabs; `;` ends a pair, so it is the one syntax character allowed in the value.
pub fn parse_redirects(service: &str, value: &str, code: u16) -> Result<Vec<Redirect>, LabelError> {
    let invalid = |reason| LabelError::invalid(service, REDIRECTS, value, reason);
    let mut out = Vec::new();
    for pair in value.split(';').map(|p| p.trim_matches([' ', '\t'])) {
        if pair.is_empty() {
            continue;
        }
        let items: Vec<&str> = list_items(pair).collect();
        let [source, target] = items.as_slice() else {
            return Err(invalid(Reason::NotAPair { pair: shown(pair) }));
        };
        for item in [source, target] {
            if let Some(reason) = bad_char(REDIRECTS, item) {
                return Err(invalid(Reason::InItem {
                    item: shown(item),
                    why: Box::new(reason),
                }));
            }
        }
        let (scheme, host, port, path) = split_url(source).map_err(|why| {
            invalid(Reason::BadSource {
                url: shown(source),
                why,
            })
        })?;
        if scheme != "http" || port.is_some() {
            return Err(invalid(Reason::SourceNotPlainHttp { url: shown(source) }));
        }
        let (t_scheme, t_host, t_port, t_path) = split_url(target).map_err(|why| {
            invalid(Reason::BadTarget {
                url: shown(target),
                why,
            })
        })?;
        let mut url = format!("{t_scheme}://{t_host}");
        if let Some(port) = t_port {
            url.push_str(&format!(":{port}"));
        }
        if let Some(path) = &t_path {
            url.push_str(path.as_str());
        }
        out.push(Redirect {
            host,
            path,
            target: url,
            target_host: t_host,
            target_path: t_path,
            code,
        });
    }
    if out.is_empty() {
        return Err(invalid(Reason::Empty {
            expected: "give at least one `source,target` pair",
        }));
    }
    Ok(out)
}

/// A URL's parts: scheme, host, port, path.
type UrlParts<'a> = (&'a str, Host, Option<u16>, Option<ContextRoot>);

/// `scheme://host[:port][/path]` -> its parts; the reason when it is not one.
fn split_url(url: &str) -> Result<UrlParts<'_>, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NotAUrl)?;
    if !matches!(scheme, "http" | "https") {
        return Err(UrlError::Scheme {
            scheme: shown(scheme),
        });
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0 && !port.starts_with('0'))
                .ok_or_else(|| UrlError::Port { port: shown(port) })?;
            (host, Some(port))
        }
        None => (authority, None),
    };
    let host = Host::parse(host).map_err(|why| UrlError::Host {
        host: shown(host),
        why,
    })?;
    let path = match path {
        None | Some("/") => None,
        Some(p) => Some(ContextRoot::parse(p).map_err(|why| UrlError::Path {
            path: shown(p),
            why,
        })?),
    };
    Ok((scheme, host, port, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::testing::*;
    use crate::model::labels::*;

    #[test]
    fn context_root_weight_and_redirect_labels_are_checked_naming_the_label() {
        let base = [(HOSTS, "a.example"), (PORT, "80")];
        let ok = |labels: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(labels);
            route(&all).expect("route")
        };
        let r = ok(&[
            (CONTEXT_ROOT, "/api/v1/"),
            (CONTEXT_ROOT_REWRITE, "true"),
            (WEIGHT, "0"),
        ]);
        assert_eq!(
            r.context_root.as_ref().map(ContextRoot::as_str),
            Some("/api/v1")
        );
        assert!(r.rewrite);
        assert_eq!(r.weight, Some(0));
        let r = ok(&[(
            REDIRECTS,
            " http://a.example/old , https://b.example:8443/new ;",
        )]);
        assert_eq!(r.redirects.len(), 1);
        assert_eq!(r.redirects[0].target, "https://b.example:8443/new");
        assert_eq!(r.redirects[0].code, 302, "Interlock's code by default");
        for (label, bad, reason) in [
            (CONTEXT_ROOT, "app", "not a context root"),
            (CONTEXT_ROOT, "/", "not a context root"),
            (CONTEXT_ROOT, "/a/../b", "not a context root"),
            (CONTEXT_ROOT, "/a b", "character ' '"),
            (CONTEXT_ROOT, "/a;b", "character ';'"),
            (CONTEXT_ROOT, "/a|b", "not a context root"),
            (CONTEXT_ROOT, "/a%2e%2e", "not a context root"),
            (CONTEXT_ROOT, "/a\nb", "character '\\n'"),
            (CONTEXT_ROOT_REWRITE, "yes", "true and false"),
            (WEIGHT, "-1", "not a weight"),
            (WEIGHT, "10001", "not a weight"),
            (WEIGHT, "1.5", "not a weight"),
            (REDIRECT_CODE, "303", "301, 302, 307 and 308"),
            (REDIRECTS, "http://a.example", "not a `source,target` pair"),
            (
                REDIRECTS,
                "http://a.example,http://b.example,http://c.example",
                "pair",
            ),
            (
                REDIRECTS,
                "https://a.example,http://b.example",
                "only http://host[/path] sources",
            ),
            (
                REDIRECTS,
                "http://a.example:8080,http://b.example",
                "only http://host[/path]",
            ),
            (REDIRECTS, "ftp://a.example,http://b.example", "scheme"),
            (REDIRECTS, "a.example,b.example", "not a URL"),
            (REDIRECTS, "http://a.example,http://b.example/x?y=1", "path"),
            (
                REDIRECTS,
                "http://a.example,http://b example",
                "character ' '",
            ),
            (REDIRECTS, "http://a.example,http://b.example/a|b", "path"),
            (REDIRECTS, "http://a.example,http://b.example:0", "port"),
            (REDIRECTS, ";", "empty"),
        ] {
            let mut all = base.to_vec();
            all.push((label, bad));
            let errs = errors(&all);
            assert_eq!(errs.len(), 1, "{label}={bad:?}: {errs:?}");
            let line = errs[0].to_string();
            assert!(
                line.starts_with(&format!("service web: label {label}=")),
                "{line}"
            );
            assert!(line.contains(reason), "{label}={bad:?}: {line}");
        }
    }

    #[test]
    fn websocket_endpoints_are_checked_and_need_nothing_else_in_either_mode() {
        for mode in ["default", "vip"] {
            let p = parse(&service(&[
                (HOSTS, "a.example"),
                (PORT, "80"),
                (BACKEND_MODE, mode),
                (WEBSOCKET_ENDPOINTS, "/ws,/live/feed"),
            ]))
            .unwrap();
            assert!(p.route.is_ok(), "{mode}");
            assert_eq!(p.warnings, vec![], "{mode}");
        }
        // Written by hand, like host lists: trimmed, empty items skipped with a warning.
        let p = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (WEBSOCKET_ENDPOINTS, " /ws , /live,"),
        ]))
        .unwrap();
        assert!(p.route.is_ok());
        assert_eq!(
            p.warnings,
            vec![LabelError::EmptyItems {
                service: "web".to_owned(),
                label: WEBSOCKET_ENDPOINTS.to_owned()
            }]
        );
        for bad in [
            "ws",
            "/ws, live",
            "/a b",
            "/ws;show info",
            "/ws\nserver x 1.2.3.4:80",
        ] {
            let p = parse(&service(&[
                (HOSTS, "a.example"),
                (PORT, "80"),
                (WEBSOCKET_ENDPOINTS, bad),
            ]))
            .unwrap();
            let errors = p.route.expect_err(bad);
            assert!(
                matches!(errors.as_slice(), [LabelError::Invalid { label, .. }] if label == WEBSOCKET_ENDPOINTS),
                "{bad:?}: {errors:?}"
            );
        }
    }
}
