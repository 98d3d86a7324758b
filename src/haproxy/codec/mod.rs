//! The one encoder of Runtime API text and the nom parsers of HAProxy's replies. Nothing else
//! in the crate builds or reads runtime-API strings; the master CLI's two requests (`reload`,
//! `show proc`) are written by [`super::master`] itself, whose replies [`proc`] parses. Parsers
//! never panic: truncated or garbage input is a [`ParseError`].

mod encode;
pub mod frame;
mod parse;
pub mod proc;
mod reply;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::state::{Admin, BackendState, ProxyState, Server};
use crate::model::{BackendName, BackendOptions, MapKey, MapValue, ServerName};

pub use encode::{
    encode, encode_into, encode_query_into, push_server_keywords, read_server_keywords,
    ADD_SERVER_OPTIONS, DOWNINTER, ERROR_LIMIT, SSL_VERIFY_NONE, SSL_VERIFY_REQUIRED,
};
pub use parse::{parse_servers_state, parse_show_backend, parse_show_info, parse_show_map};
pub use proc::{parse_reload_reply, parse_show_proc, Proc, ProcList, ReloadReply};
pub use reply::{check_query_reply, check_reply};

/// What the admin-socket client sends: a [`Command`](super::Command) (a change) or a
/// [`Query`](super::command::Query) (a read). Each encodes to one command line and checks its
/// own reply; the codec's functions above are the only text of either.
pub trait Request: std::fmt::Debug + Sync {
    /// Appends the command line (without its terminator) to `out`.
    fn encode_into(&self, out: &mut String);
    /// Whether `reply` means success ([`check_reply`]).
    fn check_reply(&self, reply: &str) -> Result<(), ReplyError>;
    /// The kind, one word in snake case, for metrics and logs.
    fn kind(&self) -> &'static str;
}

impl Request for super::Command {
    fn encode_into(&self, out: &mut String) {
        encode_into(self, out);
    }
    fn check_reply(&self, reply: &str) -> Result<(), ReplyError> {
        check_reply(self, reply)
    }
    fn kind(&self) -> &'static str {
        super::Command::kind(self)
    }
}

impl Request for super::command::Query {
    fn encode_into(&self, out: &mut String) {
        encode_query_into(self, out);
    }
    fn check_reply(&self, reply: &str) -> Result<(), ReplyError> {
        check_query_reply(self, reply)
    }
    fn kind(&self) -> &'static str {
        super::command::Query::kind(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what}: unexpected input at line {line}: {snippet:?}")]
    Syntax {
        what: &'static str,
        line: usize,
        snippet: String,
    },
    #[error("{what}: reply is truncated")]
    Truncated { what: &'static str },
    #[error("{what}: no {field} in the reply")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
}

/// HAProxy refused a command, with its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command}: {message}")]
pub struct ReplyError {
    pub command: String,
    pub message: String,
}

/// One row of `show servers state`, the columns swarm-lb reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    pub backend: BackendName,
    pub server: ServerName,
    /// `srv_addr`; a server without an address (`-`: a hostname not resolved with
    /// `init-addr none`) reads as the unspecified `0.0.0.0`.
    pub addr: IpAddr,
    pub port: u16,
    /// 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
    /// A bit mask; see [`admin_from_bits`].
    pub admin_state: u8,
    /// `srv_check_result`: the last health check's result; see [`check_result_name`].
    pub check_result: u8,
    /// `srv_check_state`: the health check's `CHK_ST_*` bits; see [`is_checking`]. A reply
    /// without the column reads as 0 (no check).
    pub check_state: u16,
}

/// `CHK_ST_ENABLED`, `CHK_ST_PAUSED` (HAProxy's `include/haproxy/check-t.h`; the same from 2.4
/// to 3.4).
const CHECK_ENABLED: u16 = 0x04;
const CHECK_PAUSED: u16 = 0x08;

/// Whether HAProxy runs this server's health check now, from `srv_check_state`: enabled and
/// not paused (a server in maint that was loaded `disabled`, or entered maint after its check
/// was enabled, is paused: measured on 2.6.12 and 3.4.7, `14` = configured|enabled|paused,
/// while a server added at runtime whose check was enabled in maint reads `6` and is checked).
pub fn is_checking(check_state: u16) -> bool {
    check_state & CHECK_ENABLED != 0 && check_state & CHECK_PAUSED == 0
}

/// `srv_check_result` as a word (`CHK_RES_*` in HAProxy's `include/haproxy/check-t.h`):
/// `unknown` (no check yet, or checks off), `neutral`, `failed`, `passed`, `condpass`
/// (passed, but the server asked to be drained).
pub fn check_result_name(result: u8) -> &'static str {
    match result {
        1 => "neutral",
        2 => "failed",
        3 => "passed",
        4 => "condpass",
        _ => "unknown",
    }
}

/// One row of `show map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

/// The fields of `show info` swarm-lb uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub version: Version,
    pub pid: u32,
    pub uptime_sec: u64,
}

/// `srv_admin_state` -> [`Admin`], as HAProxy itself folds it (`SRV_ADMF_MAINT` = 0x23,
/// `SRV_ADMF_DRAIN` = 0x18 in `include/haproxy/server-t.h`):
/// - maint when forced (0x01), inherited from a tracked server (0x02) or because the address
///   did not resolve (0x20);
/// - else drain when forced (0x08) or inherited (0x10);
/// - else ready.
///
/// Two bits are NOT maintenance. 0x04 ("config maint") only records that the config line says
/// `disabled`: it stays set after `set server ... state ready`, and the server then serves
/// traffic (measured on 2.6.12: `admin_state` 4 with `show stat` status `no check`; see the
/// integration test). 0x40 records that the FQDN was changed at runtime.
pub fn admin_from_bits(bits: u8) -> Admin {
    const MAINT: u8 = 0x01 | 0x02 | 0x20;
    const DRAIN: u8 = 0x08 | 0x10;
    if bits & MAINT != 0 {
        Admin::Maint
    } else if bits & DRAIN != 0 {
        Admin::Drain
    } else {
        Admin::Ready
    }
}

/// Rows and map entries read back from HAProxy -> the state the planner compares against.
///
/// - Internal backends (leading `_`) are left out.
/// - A backend whose only server is `vip` is [`Mode::Vip`]; any other is [`Mode::Task`] with
///   its servers in slot order (`s1`, `s2`, ..., `s10`); a server that is not a slot (none in a
///   backend the driver rendered) sorts after the slots, by name.
/// - A backend without servers does not appear: `show servers state` lists servers only.
/// - Map entries: the first entry of a key wins, as in HAProxy's lookups. An entry whose key is
///   not a valid [`MapKey`] or whose value is not one of the [`MapValue`] forms is skipped: it
///   cannot be represented, and the driver never writes one. It leaves the map file at the
///   next rewrite. A value naming a backend that does not exist is kept (the planner removes
///   it).
///
/// Every row and entry is already typed by the parsers, so this cannot fail today; the
/// `Result` leaves room for a check that needs one.
pub fn proxy_state(rows: &[ServerRow], map: &[MapEntry]) -> Result<ProxyState, ParseError> {
    let mut servers: BTreeMap<&BackendName, Vec<Server>> = BTreeMap::new();
    for row in rows.iter().filter(|row| !row.backend.is_internal()) {
        servers.entry(&row.backend).or_default().push(Server {
            name: row.server.clone(),
            addr: SocketAddr::new(row.addr, row.port),
            admin: admin_from_bits(row.admin_state),
        });
    }
    let backends = servers
        .into_iter()
        .map(|(name, mut servers)| {
            let mode = crate::haproxy::state::mode_of(&servers);
            servers.sort_by(|a, b| slot_order(a).cmp(&slot_order(b)));
            // Held until the next read (420,000 servers at 10,000 services): no spare room.
            servers.shrink_to_fit();
            let options = BackendOptions::default();
            (
                name.clone(),
                std::sync::Arc::new(BackendState {
                    mode,
                    servers,
                    options,
                }),
            )
        })
        .collect();
    let mut hosts = BTreeMap::new();
    for entry in map {
        let (Ok(key), Ok(value)) = (MapKey::parse(&entry.key), MapValue::parse(&entry.value))
        else {
            continue;
        };
        hosts.entry(key).or_insert(value);
    }
    Ok(ProxyState { backends, hosts })
}

/// Slots by number (`s2` before `s10`), then any other server by name.
fn slot_order(server: &Server) -> (usize, &str) {
    let name = &server.name;
    (name.slot_index().unwrap_or(usize::MAX), name.as_str())
}

#[cfg(test)]
mod tests;
