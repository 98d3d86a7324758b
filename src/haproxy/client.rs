//! The admin-socket client: one long-lived connection in prompt mode, commands pipelined, replies
//! read while writing, reconnect on failure and after every reload (an open session keeps an old
//! worker alive).
//!
//! Protocol (HAProxy's management guide, measured on 2.6.12): after `prompt`, every reply ends
//! with `"\n> "` ([`Replies`] splits them). Commands go one per line; the write side
//! fills a buffer of whole lines and writes it in chunks of [`WRITE_CHUNK`] bytes, while the read
//! side consumes replies at the same time on the same task: HAProxy closes a connection whose
//! replies go unread (3,000 pipelined commands did it). One command line stays far below the
//! 15,360-byte limit of a CLI line (the longest is a map edit with two names).
//!
//! Failure model: any transport error, a connection closed before all replies arrived, or the
//! deadline ([`AdminClient::timeout`], 10 s by default, covering connect, writes and reads of one
//! part of a call: a batch goes in parts of [`CALL_PART`] commands, each with its own deadline)
//! drops the connection and fails the whole call with a transient [`ClientError`]. Some
//! commands of that batch may have been applied: callers re-read the actual state and re-plan,
//! they never resend blindly. The next call connects again.
//!
//! From HAProxy 3.0, `set server ... addr` is answered before the new address is visible: a
//! `show servers state` pipelined right behind it still lists the old one (measured on 3.0.11,
//! 3.2.26 and 3.4.7; visible one or two round trips later, tens of microseconds). So that a
//! batch means the same on every version (once [`AdminClient::execute`] returns, a read shows what
//! it set), on 3.0+ `execute` waits, at most [`ADDR_SETTLE`], until every address it set is
//! listed. The version comes from `show info`, asked once per connection and only then.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{ReadHalf, WriteHalf};
use tokio::net::UnixStream;
use tracing::debug;

use super::capabilities::{Capabilities, Feature};
use super::codec::frame::Replies;
use super::codec::Request;
use super::codec::{self, Info, ParseError, ReplyError};
use super::command::{Command, MapPath, Query};
use super::state::{BackendState, ProxyState};
use crate::model::{BackendName, ServerName};

/// Commands are written in chunks of about this many bytes (whole lines, so a chunk may exceed
/// it by one line): few syscalls, and well below HAProxy's 16 KB input buffer.
pub const WRITE_CHUNK: usize = 8 * 1024;

/// How much room each socket read asks for.
const READ_CHUNK: usize = 64 * 1024;
/// Capacity the reply buffer keeps between calls (bytes): more than one read, far less than
/// a large `show servers state` ([`Replies::shrink`]).
const KEEP_REPLY_BUFFER: usize = 4 * READ_CHUNK;

/// The deadline of one call unless [`AdminClient::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Commands per part of a batch, each part with its own deadline: a cold start at 10,000
/// services is ~900,000 commands, which at HAProxy's ~100-150k commands/s (measured here,
/// pipelined) overran one 10 s deadline on every pass and never converged. A part of 20,000
/// takes 0.1-0.2 s.
pub const CALL_PART: usize = 20_000;

/// How long [`AdminClient::execute`] waits on 3.0+ for the addresses it set to be listed; past it
/// the call returns anyway (the next level-triggered pass re-reads).
pub const ADDR_SETTLE: Duration = Duration::from_millis(100);
/// Pause between two reads while addresses settle (the first re-read goes at once).
const ADDR_SETTLE_POLL: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin socket {path}: no reply within {timeout_ms} ms")]
    Timeout { path: PathBuf, timeout_ms: u64 },
    #[error(
        "admin socket {path}: connection closed before all replies arrived ({missing} missing)"
    )]
    Closed {
        path: PathBuf,
        missing: usize,
        total: usize,
    },
    #[error("admin socket {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    /// HAProxy refused a command the client sends for itself (`show servers state`,
    /// `show map`, `show info`): an unknown map file, a socket below `admin` level.
    #[error("admin socket {path}: {source}")]
    Refused {
        path: PathBuf,
        #[source]
        source: ReplyError,
    },
}

impl ClientError {
    /// The connection was already closed by HAProxy when the batch was sent: the write broke,
    /// or the connection ended before a single reply.
    fn is_stale_connection(&self) -> bool {
        match self {
            ClientError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            ),
            ClientError::Closed { missing, total, .. } => missing == total,
            _ => false,
        }
    }

    /// Worth a retry (socket gone during a reload, timeout) rather than a report.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            ClientError::Parse { .. } | ClientError::Refused { .. }
        )
    }

    /// Nobody listens at the socket's path (refused, or no such file). While the master still
    /// runs a worker, this is the mark of a refused reload whose new worker bound the path
    /// and then exited (a `bind` that failed at start, seen on 3.4): the old worker serves on,
    /// but its admin socket is no longer reachable by path.
    pub fn is_nobody_listening(&self) -> bool {
        matches!(
            self,
            ClientError::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                )
        )
    }
}

/// The admin socket of one HAProxy worker (whichever answers at `path`).
pub struct AdminClient {
    path: PathBuf,
    timeout: Duration,
    /// Commands per part of a batch, each part with its own deadline.
    part: usize,
    stream: Option<UnixStream>,
    /// Reused across calls: the encoded command lines and the received replies.
    out: String,
    replies: Replies,
    /// What the HAProxy on this connection can do, from its `show info` (the first time it
    /// matters, or the last [`AdminClient::info`]); forgotten on disconnect.
    capabilities: Option<Capabilities>,
}

impl AdminClient {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
            timeout: DEFAULT_TIMEOUT,
            part: CALL_PART,
            stream: None,
            out: String::new(),
            replies: Replies::new(),
            capabilities: None,
        }
    }

    /// The same client with another deadline per call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client with another number of commands per part of a batch (default
    /// [`CALL_PART`]).
    pub fn with_part(mut self, commands: usize) -> Self {
        self.part = commands;
        self
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The deadline of one call: connect, write every command, read every reply.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a connection is open (it may still have been closed by HAProxy since; the next
    /// call checks).
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Send every command pipelined; one result per command, in order: the reply text (what
    /// HAProxy printed before the prompt, verbatim: empty for commands that print nothing,
    /// usually ending in a newline otherwise) or, when [`codec::check_reply`] says HAProxy
    /// refused the command, a [`ReplyError`] in its place. A transport failure fails the
    /// whole call.
    ///
    /// On versions that apply `set server addr` after answering it (3.0+), a batch that moves
    /// a server and then puts it in traffic (`set server addr`, then `state ready|drain` or
    /// `enable health`, as the planner orders a task taking a free slot) goes in segments cut
    /// before that state change, each segment's addresses settled first: sent in one go, the
    /// server was listed ready at its old address (the placeholder) for the moment between
    /// the two (seen by the multi-node suite on 3.4.7, polling every 2 ms).
    pub async fn execute(
        &mut self,
        cmds: &[Command],
    ) -> Result<Vec<Result<String, ReplyError>>, ClientError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        if traffic_after_move(cmds).is_none() || !self.defers_addr_updates().await? {
            return self.execute_settled(cmds).await;
        }
        let mut replies = Vec::with_capacity(cmds.len());
        let mut start = 0;
        while start < cmds.len() {
            let end = traffic_after_move(&cmds[start..]).map_or(cmds.len(), |i| start + i);
            replies.extend(self.execute_settled(&cmds[start..end]).await?);
            start = end;
        }
        Ok(replies)
    }

    /// Reads (`show ...`), pipelined as [`AdminClient::execute`] sends changes, in parts with
    /// a deadline each: one reply per query, `Err` for each HAProxy refused.
    ///
    /// Errors: as [`AdminClient::execute`].
    pub async fn query(
        &mut self,
        queries: &[Query],
    ) -> Result<Vec<Result<String, ReplyError>>, ClientError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        self.exchange_parts(queries).await
    }

    /// [`AdminClient::execute`] of one segment: its parts, then its addresses settled.
    async fn execute_settled(
        &mut self,
        cmds: &[Command],
    ) -> Result<Vec<Result<String, ReplyError>>, ClientError> {
        let replies = self.exchange_parts(cmds).await?;
        self.settle_addrs(cmds, &replies).await;
        Ok(replies)
    }

    /// `cmds` in parts of at most `part` commands, each with its deadline; the connection is
    /// dropped on an error.
    async fn exchange_parts<R: Request>(
        &mut self,
        cmds: &[R],
    ) -> Result<Vec<Result<String, ReplyError>>, ClientError> {
        let started = Instant::now();
        let mut replies = Vec::with_capacity(cmds.len());
        let (mut bytes_out, mut bytes_in) = (0, 0);
        for (i, part) in cmds.chunks(self.part.max(1)).enumerate() {
            let result = if i == 0 {
                self.first_exchange(part).await
            } else {
                self.timed_exchange(part).await
            };
            match result {
                Ok((part_replies, out, read)) => {
                    replies.extend(part_replies);
                    bytes_out += out;
                    bytes_in += read;
                }
                Err(error) => {
                    self.disconnect();
                    debug!(
                        count = cmds.len(),
                        sent = replies.len(),
                        elapsed_us = crate::fields::us(started.elapsed()),
                        %error,
                        "runtime batch failed; connection dropped"
                    );
                    return Err(error);
                }
            }
        }
        let refused = replies.iter().filter(|r| r.is_err()).count();
        debug!(
            count = cmds.len(),
            refused,
            bytes_out,
            bytes_in,
            elapsed_us = crate::fields::us(started.elapsed()),
            "runtime batch exchanged"
        );
        Ok(replies)
    }

    /// The first exchange of a batch: on a reused connection that HAProxy closed while idle
    /// (which the idle check could not see yet), nothing reached it, so it goes again, once,
    /// on a new one.
    async fn first_exchange<R: Request>(
        &mut self,
        cmds: &[R],
    ) -> Result<(Vec<Result<String, ReplyError>>, usize, usize), ClientError> {
        let reused = self.stream.is_some();
        let result = self.timed_exchange(cmds).await;
        if reused && result.as_ref().is_err_and(ClientError::is_stale_connection) {
            debug!("admin socket was closed while idle; retrying the batch on a new connection");
            self.disconnect();
            return self.timed_exchange(cmds).await;
        }
        result
    }

    async fn timed_exchange<R: Request>(
        &mut self,
        cmds: &[R],
    ) -> Result<(Vec<Result<String, ReplyError>>, usize, usize), ClientError> {
        let result = tokio::time::timeout(self.timeout, self.exchange(cmds)).await;
        self.replies.shrink(KEEP_REPLY_BUFFER);
        match result {
            Ok(result) => result,
            Err(_elapsed) => Err(ClientError::Timeout {
                path: self.path.clone(),
                timeout_ms: crate::fields::ms(self.timeout),
            }),
        }
    }

    /// Backends, servers and the hosts map as HAProxy holds them now (`show servers state`
    /// and `show map`, pipelined in one batch).
    pub async fn actual(&mut self, map: &MapPath) -> Result<ProxyState, ClientError> {
        let cmds = [
            Query::ShowServersState { backend: None },
            Query::ShowMap { map: map.clone() },
        ];
        let mut replies = self.query(&cmds).await?.into_iter();
        let (Some(servers), Some(entries)) = (replies.next(), replies.next()) else {
            // execute() returns one reply per command; this is only a guard.
            return Err(self.closed(cmds.len()));
        };
        let rows = codec::parse_servers_state(&self.accepted(servers)?);
        let entries = codec::parse_show_map(&self.accepted(entries)?);
        let state = rows
            .and_then(|rows| codec::proxy_state(&rows, &entries?))
            .map_err(|source| self.parse_error(source))?;
        Ok(state)
    }

    /// The entries of `map` (`show map`), in the map's order.
    ///
    /// Errors: as [`AdminClient::query`]; a map HAProxy does not hold is refused.
    pub async fn map_entries(
        &mut self,
        map: &MapPath,
    ) -> Result<Vec<codec::MapEntry>, ClientError> {
        let cmds = [Query::ShowMap { map: map.clone() }];
        let Some(reply) = self.query(&cmds).await?.into_iter().next() else {
            return Err(self.closed(cmds.len()));
        };
        codec::parse_show_map(&self.accepted(reply)?).map_err(|source| self.parse_error(source))
    }

    /// The servers of `backends` only (`show servers state <backend>` each, pipelined), as
    /// [`AdminClient::actual`] reads them, with default options: what one change costs to read
    /// back, where `actual` reads every backend. A backend HAProxy does not hold is refused
    /// ([`ClientError::Refused`]); one without servers is left out of the result.
    pub async fn backends_state(
        &mut self,
        backends: &BTreeSet<BackendName>,
    ) -> Result<BTreeMap<BackendName, std::sync::Arc<BackendState>>, ClientError> {
        let cmds = show_servers_state_of(backends.iter());
        let replies = self.query(&cmds).await?;
        let rows = self.server_rows(replies)?;
        let state = codec::proxy_state(&rows, &[]).map_err(|e| self.parse_error(e))?;
        Ok(state.backends)
    }

    /// `show backend`: the name of every backend HAProxy holds, in its order.
    pub async fn backends(&mut self) -> Result<Vec<BackendName>, ClientError> {
        let cmds = [Query::ShowBackend];
        let Some(reply) = self.query(&cmds).await?.into_iter().next() else {
            return Err(self.closed(cmds.len()));
        };
        let text = self.accepted(reply)?;
        codec::parse_show_backend(&text).map_err(|source| self.parse_error(source))
    }

    /// `show info`: version, worker pid, uptime. The only place that asks it: what the
    /// version can do ([`Capabilities`]) is kept for this connection from its answer.
    pub async fn info(&mut self) -> Result<Info, ClientError> {
        let text = self.one(&Query::ShowInfo).await?;
        let info = codec::parse_show_info(&text).map_err(|source| self.parse_error(source))?;
        self.capabilities = Some(Capabilities::of(info.version));
        Ok(info)
    }

    /// What the HAProxy on this connection can do: from the last [`AdminClient::info`] on it,
    /// or asked now.
    pub async fn capabilities(&mut self) -> Result<Capabilities, ClientError> {
        match self.capabilities {
            Some(known) => Ok(known),
            None => Ok(Capabilities::of(self.info().await?.version)),
        }
    }

    /// Drop the connection (after a reload): the next call reconnects to the new worker.
    pub fn disconnect(&mut self) {
        if self.stream.take().is_some() {
            debug!(path = %self.path.display(), "admin socket disconnected");
        }
        self.replies.clear();
        self.capabilities = None;
    }

    /// On 3.0+, wait (at most [`ADDR_SETTLE`]) until every address the batch set successfully
    /// is listed by `show servers state`; see the module doc. Best effort: a failure here is
    /// logged and leaves the connection dropped; the batch's replies stand.
    async fn settle_addrs(&mut self, cmds: &[Command], replies: &[Result<String, ReplyError>]) {
        let mut want: BTreeMap<(&BackendName, &ServerName), SocketAddr> = BTreeMap::new();
        for (cmd, reply) in cmds.iter().zip(replies) {
            if let (
                Command::SetAddr {
                    backend,
                    server,
                    addr,
                },
                Ok(_),
            ) = (cmd, reply)
            {
                want.insert((backend, server), *addr);
            }
        }
        if want.is_empty() {
            return;
        }
        let started = Instant::now();
        match self.wait_for_addrs(&want).await {
            Ok(true) => {}
            Ok(false) => debug!(
                waited_ms = crate::fields::ms(ADDR_SETTLE),
                "addresses set are not all listed yet; the next pass re-reads"
            ),
            Err(error) => {
                debug!(%error, "reading back the addresses set failed");
                self.disconnect();
            }
        }
        let waited_us = crate::fields::us(started.elapsed());
        debug!(servers = want.len(), waited_us, "addresses set are settled");
    }

    /// `Ok(true)` once all of `want` is listed (at once on versions that apply it before
    /// answering), `Ok(false)` at the deadline.
    async fn wait_for_addrs(
        &mut self,
        want: &BTreeMap<(&BackendName, &ServerName), SocketAddr>,
    ) -> Result<bool, ClientError> {
        if !self.defers_addr_updates().await? {
            return Ok(true);
        }
        let deadline = Instant::now() + ADDR_SETTLE;
        // Only the backends the batch touched: one change at 10,000 services must not read
        // every server's state (29 MB) to see one address.
        let backends: BTreeSet<&BackendName> = want.keys().map(|(b, _)| *b).collect();
        let cmds = show_servers_state_of(backends.into_iter());
        loop {
            let (replies, _, _) = self.timed_exchange(&cmds).await?;
            let rows = self.server_rows(replies)?;
            let mut listed: BTreeMap<(&BackendName, &ServerName), SocketAddr> = BTreeMap::new();
            for r in &rows {
                if let Some(((b, s), _)) = want.get_key_value(&(&r.backend, &r.server)) {
                    listed.insert((*b, *s), SocketAddr::new(r.addr, r.port));
                }
            }
            if want.iter().all(|(k, addr)| listed.get(k) == Some(addr)) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(ADDR_SETTLE_POLL).await;
        }
    }

    /// Whether this HAProxy applies `set server addr` after answering (3.0+).
    async fn defers_addr_updates(&mut self) -> Result<bool, ClientError> {
        Ok(self.capabilities().await?.has(Feature::DeferredAddrUpdate))
    }

    /// One command the client sends for itself, without [`AdminClient::execute`]'s settling.
    async fn one(&mut self, cmd: &Query) -> Result<String, ClientError> {
        let (replies, _, _) = match self.first_exchange(std::slice::from_ref(cmd)).await {
            Ok(exchanged) => exchanged,
            Err(error) => {
                self.disconnect();
                return Err(error);
            }
        };
        let Some(reply) = replies.into_iter().next() else {
            return Err(self.closed(1));
        };
        self.accepted(reply)
    }

    /// The rows of `show servers state` replies, one reply per backend asked for.
    fn server_rows(
        &self,
        replies: Vec<Result<String, ReplyError>>,
    ) -> Result<Vec<codec::ServerRow>, ClientError> {
        let mut rows = Vec::new();
        for reply in replies {
            let text = self.accepted(reply)?;
            rows.extend(codec::parse_servers_state(&text).map_err(|e| self.parse_error(e))?);
        }
        Ok(rows)
    }

    fn accepted(&self, reply: Result<String, ReplyError>) -> Result<String, ClientError> {
        reply.map_err(|source| ClientError::Refused {
            path: self.path.clone(),
            source,
        })
    }

    fn parse_error(&self, source: ParseError) -> ClientError {
        ClientError::Parse {
            path: self.path.clone(),
            source,
        }
    }

    fn closed(&self, missing: usize) -> ClientError {
        ClientError::Closed {
            path: self.path.clone(),
            missing,
            total: missing,
        }
    }

    fn io_error(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// One pipelined exchange on a live connection. Returns the replies and the byte counts.
    async fn exchange<R: Request>(
        &mut self,
        cmds: &[R],
    ) -> Result<(Vec<Result<String, ReplyError>>, usize, usize), ClientError> {
        self.ensure_connected().await?;
        let AdminClient {
            path,
            stream,
            out,
            replies,
            ..
        } = self;
        let Some(stream) = stream.as_mut() else {
            return Err(ClientError::Closed {
                path: path.clone(),
                missing: cmds.len(),
                total: cmds.len(),
            });
        };
        let (rd, wr) = stream.split();
        let io = |source| ClientError::Io {
            path: path.clone(),
            source,
        };
        let mut results = Vec::with_capacity(cmds.len());
        let mut pending = cmds.iter();
        let on_reply = |body: &[u8]| {
            if let Some(cmd) = pending.next() {
                results.push(checked(cmd, body));
            }
        };
        let (bytes_out, bytes_in) = tokio::try_join!(
            async { write_commands(wr, cmds, out).await.map_err(io) },
            read_replies(rd, replies, cmds.len(), path, on_reply),
        )?;
        if replies.pending() > 0 {
            // More than one reply per command: the stream is out of step; start afresh.
            debug!(
                pending = replies.pending(),
                "unexpected bytes after the last reply"
            );
            self.disconnect();
        }
        Ok((results, bytes_out, bytes_in))
    }

    /// Reuse the open connection if HAProxy has not closed it (its `stats timeout` closes an
    /// idle CLI session, 10 s by default), else connect and enter prompt mode.
    async fn ensure_connected(&mut self) -> Result<(), ClientError> {
        if let Some(stream) = &self.stream {
            // Nothing is due between calls, so a read must find nothing to read. tokio only
            // skips the syscall when it knows the socket is not readable; the last operation
            // on this socket was a read that returned data, so the recv below really happens.
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Ok(0) => debug!("admin socket closed by HAProxy while idle; reconnecting"),
                Ok(_) => debug!("unexpected bytes on the idle admin socket; reconnecting"),
                Err(error) => debug!(%error, "admin socket failed while idle; reconnecting"),
            }
            self.disconnect();
        }
        let mut stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| self.io_error(e))?;
        self.replies.clear();
        stream
            .write_all(b"prompt\n")
            .await
            .map_err(|e| self.io_error(e))?;
        let (rd, _) = stream.split();
        // `prompt` prints nothing: its reply must be empty.
        let mut first = String::new();
        read_replies(rd, &mut self.replies, 1, &self.path, |body| {
            first = String::from_utf8_lossy(body).into_owned();
        })
        .await?;
        if !first.is_empty() {
            return Err(self.parse_error(ParseError::Syntax {
                what: "prompt",
                line: 1,
                snippet: first,
            }));
        }
        debug!(path = %self.path.display(), "admin socket connected");
        self.stream = Some(stream);
        Ok(())
    }
}

/// Encodes `cmds` one per line into `out` and writes them in chunks of about [`WRITE_CHUNK`].
async fn write_commands<R: Request>(
    mut wr: WriteHalf<'_>,
    cmds: &[R],
    out: &mut String,
) -> io::Result<usize> {
    let mut written = 0;
    out.clear();
    for cmd in cmds {
        cmd.encode_into(out);
        out.push('\n');
        if out.len() >= WRITE_CHUNK {
            wr.write_all(out.as_bytes()).await?;
            written += out.len();
            out.clear();
        }
    }
    if !out.is_empty() {
        wr.write_all(out.as_bytes()).await?;
        written += out.len();
        out.clear();
    }
    wr.flush().await?;
    Ok(written)
}

/// Reads until `want` more replies have been handed to `on_reply`. Returns the bytes read.
async fn read_replies(
    mut rd: ReadHalf<'_>,
    replies: &mut Replies,
    want: usize,
    path: &Path,
    mut on_reply: impl FnMut(&[u8]),
) -> Result<usize, ClientError> {
    let (mut got, mut read) = (0, 0);
    loop {
        while got < want {
            let Some(body) = replies.next_reply() else {
                break;
            };
            on_reply(body);
            got += 1;
        }
        if got == want {
            return Ok(read);
        }
        let buf = replies.buffer();
        buf.reserve(READ_CHUNK);
        let n = rd.read_buf(buf).await.map_err(|source| ClientError::Io {
            path: path.to_owned(),
            source,
        })?;
        if n == 0 {
            return Err(ClientError::Closed {
                path: path.to_owned(),
                missing: want - got,
                total: want,
            });
        }
        read += n;
    }
}

fn checked<R: Request>(cmd: &R, body: &[u8]) -> Result<String, ReplyError> {
    let text = String::from_utf8_lossy(body);
    cmd.check_reply(&text)?;
    Ok(text.into_owned())
}

/// `show servers state <backend>` for each of `backends`.
fn show_servers_state_of<'a>(backends: impl Iterator<Item = &'a BackendName>) -> Vec<Query> {
    backends
        .map(|b| Query::ShowServersState {
            backend: Some(b.clone()),
        })
        .collect()
}

/// The index (> 0) of the first command of `cmds` that puts in traffic a server whose address
/// an earlier command of `cmds` set: `set server ... state ready|drain` or `enable health`.
/// `None` when there is none (most batches).
fn traffic_after_move(cmds: &[Command]) -> Option<usize> {
    let mut moved: BTreeSet<(&BackendName, &ServerName)> = BTreeSet::new();
    for (i, cmd) in cmds.iter().enumerate() {
        match cmd {
            Command::SetAddr {
                backend, server, ..
            } => {
                moved.insert((backend, server));
            }
            Command::SetState {
                backend,
                server,
                state,
            } if *state != crate::haproxy::Admin::Maint && moved.contains(&(backend, server)) => {
                return Some(i)
            }
            Command::EnableHealth { backend, server } if moved.contains(&(backend, server)) => {
                return Some(i)
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    //! The client against scripted sockets: framing, ordering and the failure model. The real
    //! HAProxy is exercised in `tests/runtime_client.rs`.

    use std::net::SocketAddr;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixListener;
    use tokio::sync::oneshot;

    use super::*;
    use crate::haproxy::state::Admin;
    use crate::model::{BackendName, ServerName};

    #[tokio::test]
    async fn a_socket_path_with_nobody_listening_is_told_apart_from_a_slow_or_refusing_haproxy() {
        let dir = tempfile::tempdir().expect("tmp");
        // No file at all.
        let e = AdminClient::new(dir.path().join("none.sock"))
            .info()
            .await
            .expect_err("no socket");
        assert!(e.is_nobody_listening(), "{e}");
        // A socket file whose listener is gone (what a refused reload's worker leaves).
        let path = dir.path().join("dead.sock");
        drop(UnixListener::bind(&path).expect("bind"));
        let e = AdminClient::new(&path)
            .info()
            .await
            .expect_err("dead socket");
        assert!(e.is_nobody_listening(), "{e}");
        let timeout = ClientError::Timeout {
            path: path.clone(),
            timeout_ms: 1,
        };
        assert!(!timeout.is_nobody_listening());
        let other = ClientError::Io {
            path,
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(!other.is_nobody_listening());
    }

    fn set_state(server: &str) -> Command {
        Command::SetState {
            backend: BackendName::parse("web").expect("name"),
            server: ServerName::parse(server).expect("name"),
            state: Admin::Ready,
        }
    }

    fn set_addr(server: &str) -> Command {
        Command::SetAddr {
            backend: BackendName::parse("web").expect("name"),
            server: ServerName::parse(server).expect("name"),
            addr: SocketAddr::from(([10, 0, 0, 1], 80)),
        }
    }

    /// Serves one connection: answers `prompt`, then each line with `reply(line)` written in
    /// pieces of `piece` bytes. Stops after `lines` commands (closing the connection) or when
    /// the client goes away.
    async fn serve_one(
        listener: &UnixListener,
        lines: usize,
        piece: usize,
        reply: impl Fn(&str) -> String,
    ) {
        let (stream, _) = listener.accept().await.expect("accept");
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::new(rd).lines();
        let mut handled = 0;
        while let Ok(Some(line)) = rd.next_line().await {
            let text = if line == "prompt" {
                "\n> ".to_owned()
            } else {
                handled += 1;
                reply(&line)
            };
            for part in text.as_bytes().chunks(piece.max(1)) {
                if wr.write_all(part).await.is_err() {
                    return;
                }
            }
            if handled == lines {
                return;
            }
        }
    }

    fn socket() -> (tempfile::TempDir, PathBuf, UnixListener) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        (dir, path, listener)
    }

    #[tokio::test]
    async fn replies_come_back_in_command_order_however_the_bytes_are_cut() {
        let (_dir, path, listener) = socket();
        let server = async {
            serve_one(&listener, usize::MAX, 3, |line| {
                if line.contains("nosuch") {
                    // The 2.6 quirk: no trailing newline before the prompt.
                    "No such server.\n> ".to_owned()
                } else if line.contains(" addr ") {
                    "IP changed from '127.0.0.1' to '10.0.0.1' by 'stats socket command'\n\n> "
                        .to_owned()
                } else {
                    "\n> ".to_owned()
                }
            })
            .await
        };
        let cmds = [
            set_addr("s1"),
            set_state("nosuch"),
            set_state("s2"),
            set_addr("s3"),
        ];
        let mut client = AdminClient::new(&path);
        let client_side = async {
            let got = client.execute(&cmds).await;
            client.disconnect();
            got
        };
        let (_, got) = tokio::join!(server, client_side);
        let got = got.expect("batch");
        assert!(got[0].as_ref().is_ok_and(|r| r.starts_with("IP changed")));
        let refused = got[1].as_ref().expect_err("refused");
        assert_eq!(refused.message, "No such server.");
        assert_eq!(refused.command, "set server web/nosuch state ready");
        assert_eq!(got[2].as_deref(), Ok(""));
        assert!(got[3].is_ok());
    }

    #[tokio::test]
    async fn a_socket_that_never_answers_times_out_transiently_and_drops_the_connection() {
        let (_dir, path, listener) = socket();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let server = async {
            let (stream, _) = listener.accept().await.expect("accept");
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd).lines();
            if let Ok(Some(_prompt)) = rd.next_line().await {
                let _ = wr.write_all(b"\n> ").await;
            }
            // Read the commands, answer nothing, until the test is over.
            let _ = done_rx.await;
        };
        let mut client = AdminClient::new(&path).with_timeout(Duration::from_millis(200));
        let client_side = async {
            let got = client.execute(&[set_state("s1")]).await;
            let _ = done_tx.send(());
            got
        };
        let (_, got) = tokio::join!(server, client_side);
        let error = got.expect_err("no reply must time out");
        assert!(
            matches!(
                error,
                ClientError::Timeout {
                    timeout_ms: 200,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.is_transient());
        assert!(!client.is_connected());
    }

    #[test]
    fn a_batch_is_cut_before_a_moved_server_is_put_in_traffic() {
        let ready = |s: &str| set_state(s);
        let maint = |s: &str| Command::SetState {
            backend: BackendName::for_service("web").unwrap(),
            server: ServerName::parse(s).unwrap(),
            state: crate::haproxy::Admin::Maint,
        };
        // A task taking s3, then s4: cut before each `ready`.
        let batch = [set_addr("s3"), ready("s3"), set_addr("s4"), ready("s4")];
        assert_eq!(traffic_after_move(&batch), Some(1));
        assert_eq!(traffic_after_move(&batch[1..]), Some(2));
        assert_eq!(traffic_after_move(&batch[3..]), None);
        // A server leaving traffic (maint, then its address moves) and states of servers not
        // moved are not cut.
        assert_eq!(
            traffic_after_move(&[maint("s1"), set_addr("s1"), ready("s2")]),
            None
        );
    }

    #[tokio::test]
    async fn a_batch_longer_than_one_deadline_goes_in_parts_each_with_its_own_deadline() {
        let (_dir, path, listener) = socket();
        let (parts, part) = (4, 10);
        let total = parts * part;
        let server = async {
            let (stream, _) = listener.accept().await.expect("accept");
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd).lines();
            let mut handled = 0;
            while let Ok(Some(line)) = rd.next_line().await {
                if line != "prompt" {
                    // HAProxy busy for 150 ms at the start of each part: 600 ms in all,
                    // more than the client's 400 ms deadline, less than it per part.
                    if handled % part == 0 {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                    handled += 1;
                }
                if wr.write_all(b"\n> ").await.is_err() || handled == total {
                    return;
                }
            }
        };
        let mut client = AdminClient::new(&path)
            .with_timeout(Duration::from_millis(400))
            .with_part(part);
        let cmds: Vec<Command> = (0..total).map(|i| set_state(&format!("s{i}"))).collect();
        let (_, got) = tokio::join!(server, client.execute(&cmds));
        let got = got.expect("every part within its own deadline");
        assert_eq!(got.len(), total);
        assert!(got.iter().all(|r| r.as_deref() == Ok("")));
    }

    #[tokio::test]
    async fn a_connection_closed_mid_batch_fails_the_call_and_counts_the_missing_replies() {
        let (_dir, path, listener) = socket();
        let server = serve_one(&listener, 2, 64, |_| "\n> ".to_owned());
        let mut client = AdminClient::new(&path);
        let cmds: Vec<Command> = (1..=5).map(|i| set_state(&format!("s{i}"))).collect();
        let (_, got) = tokio::join!(server, client.execute(&cmds));
        let error = got.expect_err("closed mid-batch");
        assert!(
            matches!(error, ClientError::Closed { missing: 3, .. }),
            "{error}"
        );
        assert!(error.is_transient());
        assert!(!client.is_connected());
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_closed_is_replaced_before_the_next_batch() {
        let (_dir, path, listener) = socket();
        let mut client = AdminClient::new(&path);
        // First connection: one command, then the server closes it (as `stats timeout` does).
        let batch = [set_state("s1")];
        let (_, first) = tokio::join!(
            serve_one(&listener, 1, 64, |_| "\n> ".to_owned()),
            client.execute(&batch),
        );
        assert_eq!(first.expect("first batch"), vec![Ok(String::new())]);
        assert!(client.is_connected(), "the client has not noticed yet");
        // Bounded: a client that does not reconnect leaves the server waiting in accept().
        let server = serve_one(&listener, 1, 64, |_| "\n> ".to_owned());
        let (_, second) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(5), server),
            client.execute(&batch),
        );
        assert_eq!(
            second.expect("second batch on a new connection"),
            vec![Ok(String::new())]
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_transient_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut client = AdminClient::new(dir.path().join("absent.sock"));
        let error = client
            .execute(&[set_state("s1")])
            .await
            .expect_err("no socket");
        assert!(matches!(error, ClientError::Io { .. }), "{error}");
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn an_empty_batch_sends_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut client = AdminClient::new(dir.path().join("absent.sock"));
        assert_eq!(client.execute(&[]).await.expect("nothing to do"), vec![]);
        assert!(!client.is_connected());
    }
}
