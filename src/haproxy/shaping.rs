//! The fixed frontend rules that apply every service's shaping map entries
//! ([`crate::model::shaping`]): rendered where the template says `{{shaping}}`
//! ([`crate::haproxy::render::SHAPING`]), after the frontend has found the request's service
//! (`txn.service`) and before `use_backend`. The rules never change with the labels, so a
//! label edit is a map edit on every HAProxy version.
//!
//! HAProxy facts they stand on (configuration.txt, 2.6 to 3.4): `set-header` / `del-header`
//! take the header name as a literal and the value as a log-format; `http-after-response`
//! (2.2+) runs on every response the frontend sends, HAProxy's own (403, 429, 503) included;
//! `bytes(3)` drops the `=h:` prefix and `url_dec` undoes [`crate::model::shaping::encode`].

use crate::haproxy::Feature;
use crate::model::shaping::{REQUEST_HEADERS, RESPONSE_HEADERS};

/// The Lua action that applies a service's response headers of other names
/// (`haproxy/lua/headers.lua`, [`crate::haproxy::lua`]).
pub const LUA_RESPONSE_ACTION: &str = "lua.swarm_lb_response_headers";
/// The Lua action that applies a service's request headers of other names.
pub const LUA_REQUEST_ACTION: &str = "lua.swarm_lb_request_headers";

/// One rule that looks `<key><service>` up in the hosts map into `txn.<var>` when `txn.<cond>`
/// is set.
fn lookup(hosts_map: &str, var: &str, key: &str, cond: &str) -> String {
    format!(
        "http-request set-var(txn.{var}) str({key}),concat(,txn.service,),map({hosts_map}) if {{ var(txn.{cond}) -m found }}"
    )
}

/// The response side, without indentation, reading the hosts map at `hosts_map`: whether the
/// service shapes anything, HSTS and the response headers looked up, and the
/// `http-after-response` rules that set them. Rendered where the template says
/// `{{shaping_responses}}`, right after the request's service is known and before the access
/// rules, so that HAProxy's own answers for the service (403, 429, 401) carry its headers too
/// (a newcomer found them missing while the lookups came after the deny rules); in a template
/// without that placeholder, at the top of `{{shaping}}`.
pub fn response_rules(hosts_map: &str) -> Vec<String> {
    let lookup = |var: &str, key: &str, cond: &str| lookup(hosts_map, var, key, cond);
    let mut out = vec![
        // One lookup for every request with a service: does it shape anything?
        lookup("shaped", "$", "service"),
        // HTTPS as the frontend's own rules say it (X-Forwarded-Proto is ours unless a
        // trusted balancer sent it): HSTS is sent on HTTPS responses only (RFC 6797, 7.2).
        "http-request set-var(txn.https) str(1) if { var(txn.shaped) -m found } { req.hdr(x-forwarded-proto,-1),lower -m str https }".to_owned(),
        lookup("hsts", "$h:", "https"),
    ];
    let value = |var: &str| format!("%[var(txn.{var}),bytes(3),url_dec]");
    for (i, name) in RESPONSE_HEADERS.iter().enumerate() {
        let var = format!("r{i}");
        out.push(lookup(&var, &format!("$r:{name}:"), "shaped"));
        out.push(format!(
            "http-after-response del-header {name} if {{ var(txn.{var}) -m str =h: }}"
        ));
        out.push(format!(
            "http-after-response set-header {name} {} if {{ var(txn.{var}) -m beg =h: }} !{{ var(txn.{var}) -m str =h: }}",
            value(&var)
        ));
    }
    out.push(format!(
        "http-after-response set-header strict-transport-security {} if {{ var(txn.hsts) -m beg =h: }}",
        value("hsts")
    ));
    // Other names: the service's list (`$rl:`) for the Lua action, which runs only when the
    // service has one. `http-after-response` (HAProxy's own answers too) where Lua actions
    // may run there (3.0+), else `http-response` (2.6: answers from tasks only).
    out.push(list_lookup(hosts_map, "rl", "$rl:"));
    let run = format!("{LUA_RESPONSE_ACTION} if {{ var(txn.rl) -m found }}");
    out.extend([
        Feature::LuaAfterResponse.config_if(),
        format!("http-after-response {run}"),
        ".else".to_owned(),
        format!("http-response {run}"),
        ".endif".to_owned(),
    ]);
    out
}

/// The rule that looks the service's header list `<key><service>` up into `txn.<var>`,
/// without its `=l:` prefix.
fn list_lookup(hosts_map: &str, var: &str, key: &str) -> String {
    format!(
        "http-request set-var(txn.{var}) str({key}),concat(,txn.service,),map({hosts_map}),bytes(3) if {{ var(txn.shaped) -m found }}"
    )
}

/// The request side, without indentation, reading the hosts map at `hosts_map`: compression,
/// the timeouts' lookups and the request headers, after the access rules and basic auth (a
/// `request_header.Authorization` that removes the header must act after auth read it).
/// Needs `txn.shaped` from [`response_rules`], which comes first.
pub fn frontend_rules(hosts_map: &str) -> Vec<String> {
    let lookup = |var: &str, key: &str, cond: &str| lookup(hosts_map, var, key, cond);
    let mut out = vec![
        // Compression (`com.docker.lb.compress`): the frontend names the algorithms and a type
        // no response has, so it compresses nothing itself; a backend whose section (or named
        // defaults) lists the usual text types compresses them. HAProxy takes a backend's
        // algorithms and types before the frontend's (configuration.txt, "compression"), but
        // attaches the compression filter only to proxies its config declares with
        // `compression`: a 3.4 backend created at runtime from a defaults section that
        // compresses got no filter and compressed nothing (measured on 3.4.7; `filter` is not
        // allowed in `defaults`), while with these frontend lines it does.
        COMPRESSION_ALGOS.to_owned(),
        format!("compression type {COMPRESSION_NONE}"),
    ];
    // Timeouts: the values here, the `set-timeout` rules in the backends ([`backend_rules`]).
    let timeout = |var: &str, key: &str| {
        format!(
            "http-request set-var(txn.{var}) str({key}),concat(,txn.service,),map({hosts_map}),field(2,:) if {{ var(txn.shaped) -m found }}"
        )
    };
    for (var, key) in [("t_server", "$ts:"), ("t_tunnel", "$tt:")] {
        out.push(timeout(var, key));
    }
    // Only 3.4+ takes `set-timeout connect` (the backend rule); before, the lookup would
    // serve nothing.
    out.extend([
        Feature::SetTimeoutConnect.config_if(),
        timeout("t_connect", "$tc:"),
        ".endif".to_owned(),
    ]);
    let value = |var: &str| format!("%[var(txn.{var}),bytes(3),url_dec]");
    for (i, name) in REQUEST_HEADERS.iter().enumerate() {
        let var = format!("q{i}");
        out.push(lookup(&var, &format!("$q:{name}:"), "shaped"));
        out.push(format!(
            "http-request del-header {name} if {{ var(txn.{var}) -m str =h: }}"
        ));
        out.push(format!(
            "http-request set-header {name} {} if {{ var(txn.{var}) -m beg =h: }} !{{ var(txn.{var}) -m str =h: }}",
            value(&var)
        ));
    }
    // Other names: the Lua action, after the fixed rules.
    out.push(list_lookup(hosts_map, "ql", "$ql:"));
    out.push(format!(
        "http-request {LUA_REQUEST_ACTION} if {{ var(txn.ql) -m found }}"
    ));
    out
}

/// The algorithms `com.docker.lb.compress` offers: gzip or deflate, whichever the client's
/// `Accept-Encoding` names first (Debian's HAProxy also has `identity` and `raw-deflate`, which
/// browsers do not ask for).
pub const COMPRESSION_ALGOS: &str = "compression algo gzip deflate";
/// A `Content-Type` no response has: the frontend's compression type, so that a backend
/// without its own types compresses nothing.
const COMPRESSION_NONE: &str = "swarm-lb/none";

/// The rules of every HTTP backend (written into the backend section, or the named defaults
/// it is created from on 3.4): `set-timeout` needs a section with the backend capability
/// (2.6.12: "proxy 'http' has no backend capability" in a frontend) and is not allowed in an
/// anonymous `defaults` section. The values, in milliseconds, were looked up by
/// [`frontend_rules`]. `connect` only where HAProxy takes it
/// ([`Feature::SetTimeoutConnect`]: 2.6 to 3.2 refuse the whole config otherwise).
pub fn backend_rules() -> [String; 5] {
    [
        "http-request set-timeout server var(txn.t_server) if { var(txn.t_server) -m found }"
            .to_owned(),
        "http-request set-timeout tunnel var(txn.t_tunnel) if { var(txn.t_tunnel) -m found }"
            .to_owned(),
        Feature::SetTimeoutConnect.config_if(),
        "http-request set-timeout connect var(txn.t_connect) if { var(txn.t_connect) -m found }"
            .to_owned(),
        ".endif".to_owned(),
    ]
}

/// The health check of a backend with `com.docker.lb.health_path` (the section lines of
/// [`crate::model::HealthCheck`]), reading the path and `Host` from the hosts map at
/// `hosts_map` at every check, so that editing them is a map edit. In a check, `be_name` is
/// the checked server's backend (measured on 2.6.12, 3.0, 3.2 and 3.4.7: `uri-lf
/// %[be_name]` sent `/web:2`); `field(1,:)` drops a 3.4 generation's `:<n>`. `http-check
/// set-var`, `send ... uri-lf` / `hdr <name> <fmt>` and `expect status <range>` are 2.2+
/// (configuration.txt, "http-check send", "http-check expect"). A header whose value is
/// empty is not sent (measured: no `Host` without `health_host`), and an empty `uri-lf`
/// sends `/`.
pub fn health_check_rules(hosts_map: &str) -> [String; 4] {
    let lookup = |key: &str| {
        format!("%[str({key}),concat(,check.service,),map({hosts_map}),bytes(3),url_dec]")
    };
    [
        "option httpchk".to_owned(),
        "http-check set-var(check.service) be_name,field(1,:)".to_owned(),
        format!(
            "http-check send meth GET uri-lf {} hdr host {}",
            lookup("$k:"),
            lookup("$kh:")
        ),
        "http-check expect status 200-399".to_owned(),
    ]
}

/// [`backend_rules`], each on its own indented line.
pub fn push_backend_rules(out: &mut String) {
    for rule in backend_rules() {
        out.push_str("    ");
        out.push_str(&rule);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_header_has_its_lookup_removal_and_setting_rule() {
        let rules: Vec<String> = response_rules("/run/hosts.map")
            .into_iter()
            .chain(frontend_rules("/run/hosts.map"))
            .collect();
        for name in REQUEST_HEADERS {
            assert!(rules
                .iter()
                .any(|r| r.starts_with(&format!("http-request del-header {name} "))));
            assert!(rules
                .iter()
                .any(|r| r.starts_with(&format!("http-request set-header {name} "))));
        }
        for name in RESPONSE_HEADERS {
            assert!(rules
                .iter()
                .any(|r| r.starts_with(&format!("http-after-response set-header {name} "))));
        }
        assert!(rules.iter().all(|r| !r.contains('\n') && !r.contains('#')));
        // Other names: looked up, and the Lua actions run only for a service with a list.
        for action in [LUA_RESPONSE_ACTION, LUA_REQUEST_ACTION] {
            assert!(rules.iter().any(|r| r.contains(action)), "{action}");
        }
        // Every conditional block is closed.
        let opened = rules.iter().filter(|r| r.starts_with(".if ")).count();
        let closed = rules.iter().filter(|r| *r == ".endif").count();
        assert_eq!(opened, closed);
    }
}
