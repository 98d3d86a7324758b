//! The one encoder of Runtime API text and the nom parsers of HAProxy's replies. Nothing else
//! in the crate builds or reads runtime-API strings. Parsers never panic: truncated or garbage
//! input is a [`ParseError`].

pub mod proc;

use std::net::IpAddr;

use super::command::Command;
use super::state::ProxyState;
use crate::model::{BackendName, ServerName};

pub use proc::{parse_reload_reply, parse_show_proc, Proc, ProcList, ReloadReply};

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
    pub addr: IpAddr,
    pub port: u16,
    pub op_state: u8,
    pub admin_state: u8,
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

/// The runtime-API text of one command, without the line terminator.
pub fn encode(cmd: &Command) -> String {
    let _ = cmd;
    todo!("codec::encode")
}

/// Whether `reply` (the text HAProxy sent back for `cmd`) means success.
pub fn check_reply(cmd: &Command, reply: &str) -> Result<(), ReplyError> {
    let _ = (cmd, reply);
    todo!("codec::check_reply")
}

pub fn parse_servers_state(text: &str) -> Result<Vec<ServerRow>, ParseError> {
    let _ = text;
    todo!("codec::parse_servers_state")
}

pub fn parse_show_map(text: &str) -> Result<Vec<MapEntry>, ParseError> {
    let _ = text;
    todo!("codec::parse_show_map")
}

pub fn parse_show_info(text: &str) -> Result<Info, ParseError> {
    let _ = text;
    todo!("codec::parse_show_info")
}

/// Rows and map entries read back from HAProxy -> the state the planner compares against.
/// Internal (`_`) backends are left out; unknown map values are kept (the planner removes them).
pub fn proxy_state(rows: &[ServerRow], map: &[MapEntry]) -> Result<ProxyState, ParseError> {
    let _ = (rows, map);
    todo!("codec::proxy_state")
}
