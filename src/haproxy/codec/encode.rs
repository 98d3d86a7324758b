//! The one encoder: a [`Command`] (a change) or a [`Query`] (a read) -> one Runtime API
//! command line.
//!
//! Every name in a [`Command`] is a checked newtype (letters, digits and a few of `-_.:/`), so
//! nothing needs escaping and no output can carry `;`, `#`, `\`, a space inside an argument or
//! a newline: one command is exactly one line. The one exception is `set ssl cert`, whose PEM
//! payload follows on lines of its own (see [`Command::SetSslCert`]).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::super::command::{Command, Query, ServerKeywords};
use super::super::state::Admin;
use super::Request;
use crate::model::{BackendTls, FailureLimit, ServerOptions};

/// The options of a server added at runtime: the same health check the rendered config lines
/// carry (plain `check`). A dynamic server does not inherit `default-server`, so anything the
/// config sets there must be repeated here to behave alike.
///
/// On 2.6 a dynamically added server starts in maint (`srv_admin_state` 0x01): the caller
/// follows [`Command::AddServer`] with [`Command::SetState`] `ready` to put it in service.
/// Its check is configured but stays off until `enable health <b>/<s>` (measured: `show stat`
/// says `no check`, then `UP` with checks after `enable health`).
pub const ADD_SERVER_OPTIONS: &str = "check";

/// Appends ` <keyword> ...` for each of `keywords`: the text of `add server` and of the
/// rendered config's `default-server` lines alike (one spelling for both).
pub fn push_server_keywords(out: &mut String, keywords: &ServerKeywords) {
    let ServerOptions {
        failure_limit,
        backend_tls,
        check_inter_ms,
    } = keywords.options();
    if let Some(ms) = check_inter_ms {
        // The health check's interval (`com.docker.lb.health_interval`); `fastinter` and
        // `downinter`, when a failure limit sets them, still rule while a server changes state.
        let _ = write!(out, " {INTER} {ms}ms");
    }
    if let Some(limit) = failure_limit {
        // The check that follows a mark-down may already be scheduled (on the `inter` cycle)
        // and come at once; `rise 2` with `fastinter` (the interval while a server's health
        // rises) at the timeout keeps the task out at least the timeout. Measured with `rise
        // 1`: back after 0.6-2 s whatever the timeout.
        let _ = write!(
            out,
            " observe layer7 {ERROR_LIMIT} {} on-error mark-down rise 2 fastinter {t}ms {DOWNINTER} {t}ms",
            limit.max_fails,
            t = limit.fail_timeout_ms
        );
    }
    match (backend_tls, keywords.ca_file()) {
        (None, _) => {}
        (Some(BackendTls { verify: false }), _) => out.push_str(SSL_VERIFY_NONE),
        (Some(BackendTls { verify: true }), ca_file) => {
            out.push_str(SSL_VERIFY_REQUIRED);
            out.push_str(ca_file.map_or("", |c| c.as_str()));
        }
    }
}

/// The options one line of keywords [`push_server_keywords`] wrote says (a rendered config's
/// `default-server` line), laid over `into`: what the line does not mention stays. The one
/// reader of that text, beside its one writer.
pub fn read_server_keywords(line: &str, into: &mut ServerOptions) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i + 1).copied()
    };
    let limit = || {
        Some(FailureLimit {
            max_fails: after(ERROR_LIMIT)?.parse().ok()?,
            fail_timeout_ms: after(DOWNINTER)?.strip_suffix("ms")?.parse().ok()?,
        })
    };
    if let Some(limit) = limit() {
        into.failure_limit = Some(limit);
    }
    if let Some(ms) = after(INTER).and_then(|t| t.strip_suffix("ms")?.parse().ok()) {
        into.check_inter_ms = Some(ms);
    }
    match after("verify") {
        Some("none") => into.backend_tls = Some(BackendTls { verify: false }),
        Some("required") => into.backend_tls = Some(BackendTls { verify: true }),
        _ => {}
    }
}

/// Keywords of [`push_server_keywords`] the config parser looks for.
pub const ERROR_LIMIT: &str = "error-limit";
pub const DOWNINTER: &str = "downinter";
pub const INTER: &str = "inter";
/// TLS to the server, its certificate taken as it is (`ssl_backend_tls_verify=none`).
pub const SSL_VERIFY_NONE: &str = " ssl verify none";
/// TLS to the server, verified against the CA file that follows (`required`).
pub const SSL_VERIFY_REQUIRED: &str = " ssl verify required ca-file ";

/// The runtime-API text of one command, without the line terminator.
pub fn encode<R: Request + ?Sized>(request: &R) -> String {
    let mut line = String::with_capacity(64);
    request.encode_into(&mut line);
    line
}

/// Appends the text of `query` (without the line terminator) to `out`.
pub fn encode_query_into(query: &Query, out: &mut String) {
    match query {
        Query::ShowServersState { backend: None } => out.push_str("show servers state"),
        Query::ShowServersState {
            backend: Some(backend),
        } => push_words(out, &["show servers state ", backend.as_str()]),
        Query::ShowMap { map } => push_words(out, &["show map ", map.as_str()]),
        Query::ShowInfo => out.push_str("show info"),
        Query::ShowBackend => out.push_str("show backend"),
    }
}

/// Appends the text of `cmd` (without the line terminator) to `out`: the allocation-free form
/// the client uses to fill its write buffer. Built with `push_str` rather than `write!`: the
/// client encodes tens of thousands of commands per batch and formatting machinery was a third
/// of its CPU time.
pub fn encode_into(cmd: &Command, out: &mut String) {
    match cmd {
        Command::SetAddr {
            backend,
            server,
            addr,
        } => {
            push_server(out, "set server ", backend.as_str(), server.as_str());
            out.push_str(" addr ");
            push_ip(out, addr.ip());
            out.push_str(" port ");
            push_u16(out, addr.port());
        }
        Command::SetState {
            backend,
            server,
            state,
        } => {
            push_server(out, "set server ", backend.as_str(), server.as_str());
            out.push_str(" state ");
            out.push_str(state_word(*state));
        }
        Command::AddServer {
            backend,
            server,
            addr,
            keywords,
        } => {
            push_server(out, "add server ", backend.as_str(), server.as_str());
            out.push(' ');
            push_socket_addr(out, addr);
            out.push(' ');
            out.push_str(ADD_SERVER_OPTIONS);
            push_server_keywords(out, keywords);
        }
        Command::EnableHealth { backend, server } => {
            push_server(out, "enable health ", backend.as_str(), server.as_str());
        }
        Command::AddMap { map, key, value } => {
            push_words(
                out,
                &[
                    "add map ",
                    map.as_str(),
                    " ",
                    key.as_str(),
                    " ",
                    value.as_str(),
                ],
            );
        }
        Command::SetMap { map, key, value } => {
            push_words(
                out,
                &[
                    "set map ",
                    map.as_str(),
                    " ",
                    key.as_str(),
                    " ",
                    value.as_str(),
                ],
            );
        }
        Command::DelMap { map, key } => {
            push_words(out, &["del map ", map.as_str(), " ", key.as_str()]);
        }
        Command::AddBackend { backend, defaults } => push_words(
            out,
            &[
                "add backend ",
                backend.as_str(),
                " from ",
                defaults.as_str(),
            ],
        ),
        Command::PublishBackend { backend } => {
            push_words(out, &["publish backend ", backend.as_str()]);
        }
        Command::UnpublishBackend { backend } => {
            push_words(out, &["unpublish backend ", backend.as_str()]);
        }
        Command::SetDynamicCookieKey { backend, key } => push_words(
            out,
            &[
                "set dynamic-cookie-key backend ",
                backend.as_str(),
                " ",
                key.as_str(),
            ],
        ),
        Command::EnableDynamicCookie { backend } => {
            push_words(out, &["enable dynamic-cookie backend ", backend.as_str()]);
        }
        Command::WaitServerRemovable {
            backend,
            server,
            timeout_ms,
        } => {
            // The delay is a plain number of milliseconds (HAProxy's default time unit).
            let _ = write!(out, "wait {timeout_ms} srv-removable ");
            push_words(out, &[backend.as_str(), "/", server.as_str()]);
        }
        Command::DelServer { backend, server } => {
            push_server(out, "del server ", backend.as_str(), server.as_str());
        }
        Command::DelBackend { backend } => {
            push_words(out, &["del backend ", backend.as_str()]);
        }
        Command::NewSslCert { cert } => push_words(out, &["new ssl cert ", cert.as_str()]),
        Command::SetSslCert { cert, pem } => {
            // The client ends the command with `\n`: after this last `\n` that makes the blank
            // line that ends the payload.
            push_words(
                out,
                &["set ssl cert ", cert.as_str(), " <<\n", pem.as_str(), "\n"],
            );
        }
        Command::CommitSslCert { cert } => push_words(out, &["commit ssl cert ", cert.as_str()]),
        Command::AbortSslCert { cert } => push_words(out, &["abort ssl cert ", cert.as_str()]),
        Command::AddSslCrtList { list, cert } => {
            push_words(
                out,
                &["add ssl crt-list ", list.as_str(), " ", cert.as_str()],
            );
        }
        Command::DelSslCrtList { list, cert } => {
            push_words(
                out,
                &["del ssl crt-list ", list.as_str(), " ", cert.as_str()],
            );
        }
        Command::DelSslCert { cert } => push_words(out, &["del ssl cert ", cert.as_str()]),
    }
}

fn push_words(out: &mut String, words: &[&str]) {
    for word in words {
        out.push_str(word);
    }
}

fn push_server(out: &mut String, verb: &str, backend: &str, server: &str) {
    push_words(out, &[verb, backend, "/", server]);
}

fn state_word(state: Admin) -> &'static str {
    match state {
        Admin::Ready => "ready",
        Admin::Drain => "drain",
        Admin::Maint => "maint",
    }
}

/// Decimal digits of `n`, without leading zeros.
fn push_u16(out: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// IPv4 dotted quad by hand (the hot path); IPv6 in its canonical `Display` form, no brackets.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u16(out, u16::from(octet));
            }
        }
        IpAddr::V6(ip) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "{ip}");
        }
    }
}

/// `ip:port`, IPv6 in brackets. Not `SocketAddr`'s `Display`, which appends `%scope_id` to a
/// scoped IPv6 address: HAProxy would not take that as a port.
fn push_socket_addr(out: &mut String, addr: &SocketAddr) {
    let ip = addr.ip();
    if ip.is_ipv6() {
        out.push('[');
        push_ip(out, ip);
        out.push(']');
    } else {
        push_ip(out, ip);
    }
    out.push(':');
    push_u16(out, addr.port());
}
