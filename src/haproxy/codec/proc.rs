//! Parsers for the master CLI: `show proc` and the 2.7+ `reload` reply.

use super::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub reloads: u32,
}

/// `show proc` on the master CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcList {
    pub master: Proc,
    /// `[failed: N]` on the master line (0 where the version does not print it).
    pub failed_reloads: u32,
    pub workers: Vec<Proc>,
    pub old_workers: Vec<Proc>,
}

/// The 2.7+ reply to `reload`: `Success=1|0` then the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReply {
    pub success: bool,
    pub log: String,
}

pub fn parse_show_proc(text: &str) -> Result<ProcList, ParseError> {
    let _ = text;
    todo!("proc::parse_show_proc")
}

/// `Ok(None)` when the reply carries no status (2.6 closes the connection with nothing).
pub fn parse_reload_reply(text: &str) -> Result<Option<ReloadReply>, ParseError> {
    let _ = text;
    todo!("proc::parse_reload_reply")
}
