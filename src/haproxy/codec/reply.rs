//! Success or refusal of one reply. Each command's success is recognised positively (its
//! known success text); anything else is HAProxy's refusal, kept verbatim as the message. An
//! unknown reply is therefore reported, never mistaken for success; the next read of the
//! actual state shows what really happened.
//!
//! Texts measured on 2.6.12 (fixtures in `tests/fixtures/haproxy-2.6/`):
//! - `set server ... addr`: success and failure are both "warnings". Success starts with
//!   `IP changed from '<old>' to '<new>'` or `no need to change the addr`, followed by
//!   `, port changed from ...` or `, no need to change the port`, then
//!   ` by 'stats socket command'`. Failures: `Invalid addr '<a>'`, `Update for the current
//!   server address family is only supported through configuration file` (a slot declared by
//!   hostname with `init-addr none`), `No such server.`, `No such backend.`.
//!   From 3.0 (measured on 3.0.11, 3.2.26, 3.4.7) an unchanged part is left out: success is
//!   `IP changed from ...`, `port changed from ...` (same IP) or `nothing changed`; `Invalid
//!   addr '<a>'` lost its ` by 'stats socket command'`.
//! - `set server ... state`: nothing on success.
//! - `add server`: `New server registered.`; failures `Already exists a server with the same
//!   name in backend.`, `Backend must use a dynamic load balancing to support dynamic
//!   servers.` and `No such backend.` (both without trailing newline on 2.6); 3.4 says `Backend
//!   does not support dynamic servers : backend '<b>' uses a non dynamic load balancing
//!   method.` instead. 2.6 refuses the `cookie` keyword, 3.0+ the `enabled` one (neither sent).
//! - `add|set|del map`: nothing on success; `entry not found.` (set), `Key not found.` (del),
//!   `Unknown map identifier. Please use #<id> or <file>.`. Map edits are allowed at
//!   `operator` and even `user` level; server commands need `admin`, else `Permission denied`.
//! - `show servers state`: first line `1`; `Can't find backend.` for an unknown backend.
//! - `show map`: `0x<ptr> <key> <value>` lines, nothing for an empty map.
//! - `show info`: `Name: HAProxy` then `Field: value` lines.
//! - `ssl cert` / `ssl crt-list` (2.2+, measured on 2.6.12 and 3.4.7): see each
//!   [`Command`] variant. `set ssl cert` is answered after one `+ ` prompt per payload line.
//! - 3.4's backend commands (measured on 3.4.7): `add backend` -> `New backend registered.`
//!   (refusals `Error during backend creation : name is already used by other proxy
//!   'backend <b>'.`, `Cannot find default proxy '<d>'.`); `publish backend` -> `Backend
//!   published.`, `unpublish backend` -> `Backend unpublished.` (both also when it already
//!   was; `No such backend.`); `set dynamic-cookie-key backend`, `enable dynamic-cookie
//!   backend` -> nothing; `wait <ms> srv-removable` -> `Done.` (refusal `Server still has
//!   connections attached to it, cannot remove it.`); `del server` -> `Server deleted.`
//!   (refusal `Server still has connections attached to it, cannot remove it.`); `del
//!   backend` -> HAProxy's own log lines (`Server <b>/<s> is going DOWN ...`, `backend '<b>'
//!   has no server available!`, `Server deleted.`) then `Backend deleted.` as the LAST line
//!   (refusals `Only a backend without server can be deleted.`, `No such backend.`).
//! - any command HAProxy does not know: `Unknown command, but maybe ...` (3.0+: `Unknown
//!   command: '<word>', but maybe ...`) and a command list.

/// The reply to a payload command without the `+ ` prompts HAProxy prints in prompt mode,
/// one per payload line, before its answer.
fn payload_reply(text: &str) -> &str {
    let mut text = text;
    while let Some(rest) = text.strip_prefix("+ ") {
        text = rest;
    }
    text.trim()
}

use super::super::command::{Command, Query};
use super::{encode, ReplyError};

/// Whether `reply` (the text HAProxy sent back for `cmd`, as the client hands it out: the
/// bytes before the prompt) means success. A refusal carries the command line and HAProxy's
/// own message, trimmed.
pub fn check_reply(cmd: &Command, reply: &str) -> Result<(), ReplyError> {
    let text = reply.trim();
    let ok = match cmd {
        // Every version's success forms (none of them is a refusal on another version).
        Command::SetAddr { .. } => {
            text.starts_with("IP changed from ")
                || text.starts_with("no need to change the addr")
                || text.starts_with("port changed from ")
                || text == "nothing changed"
        }
        Command::SetState { .. }
        | Command::EnableHealth { .. }
        | Command::AddMap { .. }
        | Command::SetMap { .. }
        | Command::DelMap { .. } => text.is_empty(),
        Command::AddServer { .. } => text == "New server registered.",
        Command::SetDynamicCookieKey { .. } | Command::EnableDynamicCookie { .. } => {
            text.is_empty()
        }
        Command::AddBackend { .. } => text == "New backend registered.",
        Command::PublishBackend { .. } => text == "Backend published.",
        Command::UnpublishBackend { .. } => text == "Backend unpublished.",
        Command::WaitServerRemovable { .. } => text == "Done.",
        // HAProxy's log lines may come first (see the module doc): the last line decides.
        Command::DelServer { .. } => last_line(text) == "Server deleted.",
        Command::DelBackend { .. } => last_line(text) == "Backend deleted.",
        Command::NewSslCert { .. } => text.starts_with("New empty certificate store "),
        Command::SetSslCert { .. } => {
            let text = payload_reply(text);
            text.starts_with("Transaction created for certificate ")
                || text.starts_with("Transaction updated for certificate ")
        }
        Command::CommitSslCert { .. } | Command::AddSslCrtList { .. } => {
            text.lines().last() == Some("Success!")
        }
        Command::AbortSslCert { .. } => text.starts_with("Transaction aborted for certificate "),
        Command::DelSslCrtList { .. } => {
            text.starts_with("Entry ") && text.contains(" deleted in crtlist ")
        }
        Command::DelSslCert { .. } => {
            text.starts_with("Certificate ") && text.ends_with(" deleted!")
        }
    };
    if ok {
        Ok(())
    } else {
        let command = match cmd {
            // The payload holds a key: the refusal names the command line alone.
            Command::SetSslCert { cert, .. } => format!("set ssl cert {cert} <<"),
            _ => encode(cmd),
        };
        Err(ReplyError {
            command,
            message: payload_reply(text).to_owned(),
        })
    }
}

/// The last non-blank line of `text`, trimmed ("" for none).
fn last_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
}

/// [`check_reply`] for a read.
pub fn check_query_reply(query: &Query, reply: &str) -> Result<(), ReplyError> {
    let text = reply.trim();
    let ok = match query {
        Query::ShowServersState { .. } => text.lines().next() == Some("1"),
        Query::ShowMap { .. } => text.is_empty() || text.starts_with("0x"),
        Query::ShowInfo => text.starts_with("Name: "),
        Query::ShowBackend => text.starts_with("# name\n"),
    };
    if ok {
        Ok(())
    } else {
        Err(ReplyError {
            command: encode(query),
            message: text.to_owned(),
        })
    }
}
