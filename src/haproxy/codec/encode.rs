//! The one encoder: [`Command`] -> one Runtime API command line.
//!
//! Every name in a [`Command`] is a checked newtype (letters, digits and a few of `-_.:/`), so
//! nothing needs escaping and no output can carry `;`, `#`, `\`, a space inside an argument or
//! a newline: one command is exactly one line.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::super::command::Command;
use super::super::state::Admin;

/// The options of a server added at runtime: the same health check the rendered config lines
/// carry (plain `check`). A dynamic server does not inherit `default-server`, so anything the
/// config sets there must be repeated here to behave alike.
///
/// On 2.6 a dynamically added server starts in maint (`srv_admin_state` 0x01) and its check is
/// configured but not running until `enable health <b>/<s>`; the planner follows
/// [`Command::AddServer`] with [`Command::SetState`] `ready` to put it in service.
pub const ADD_SERVER_OPTIONS: &str = "check";

/// The runtime-API text of one command, without the line terminator.
pub fn encode(cmd: &Command) -> String {
    let mut line = String::with_capacity(64);
    encode_into(cmd, &mut line);
    line
}

/// Appends the text of `cmd` (without the line terminator) to `out`: the allocation-free form
/// the client uses to fill its write buffer.
pub fn encode_into(cmd: &Command, out: &mut String) {
    // Writing to a String cannot fail; `let _` keeps the encoder free of unwrap().
    let _ = match cmd {
        Command::SetAddr {
            backend,
            server,
            addr,
        } => write!(
            out,
            "set server {backend}/{server} addr {} port {}",
            addr.ip(),
            addr.port()
        ),
        Command::SetState {
            backend,
            server,
            state,
        } => write!(
            out,
            "set server {backend}/{server} state {}",
            state_word(*state)
        ),
        Command::AddServer {
            backend,
            server,
            addr,
        } => {
            let _ = write!(out, "add server {backend}/{server} ");
            push_socket_addr(out, addr);
            write!(out, " {ADD_SERVER_OPTIONS}")
        }
        Command::AddMap { map, key, value } => {
            write!(out, "add map {} {key} {value}", map.as_str())
        }
        Command::SetMap { map, key, value } => {
            write!(out, "set map {} {key} {value}", map.as_str())
        }
        Command::DelMap { map, key } => write!(out, "del map {} {key}", map.as_str()),
        Command::ShowServersState { backend: None } => write!(out, "show servers state"),
        Command::ShowServersState {
            backend: Some(backend),
        } => write!(out, "show servers state {backend}"),
        Command::ShowMap { map } => write!(out, "show map {}", map.as_str()),
        Command::ShowInfo => write!(out, "show info"),
    };
}

fn state_word(state: Admin) -> &'static str {
    match state {
        Admin::Ready => "ready",
        Admin::Drain => "drain",
        Admin::Maint => "maint",
    }
}

/// `ip:port`, IPv6 in brackets. Written by hand rather than with `SocketAddr`'s `Display`,
/// which appends `%scope_id` to a scoped IPv6 address: HAProxy would not take that as a port.
fn push_socket_addr(out: &mut String, addr: &SocketAddr) {
    let _ = match addr.ip() {
        IpAddr::V4(ip) => write!(out, "{ip}:{}", addr.port()),
        IpAddr::V6(ip) => write!(out, "[{ip}]:{}", addr.port()),
    };
}
