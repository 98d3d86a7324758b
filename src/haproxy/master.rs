//! The master CLI (`-S` socket): `show proc`, and `reload` with completion detection (2.6:
//! poll `show proc` for a new worker or a higher failed count; 2.7+: the `Success=` reply).
//!
//! Every request is one connection in non-interactive mode: send the command, shut the write
//! side (the master CLI answers and closes only once its input ends), read to EOF.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, info};

use super::codec::{parse_reload_reply, parse_show_proc, ParseError, ProcList, ReloadReply};

/// How long one master CLI request (connect, send, read to EOF) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two `show proc` while a 2.6 reload completes (it takes ~0.1-0.5 s).
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a 2.6 failure message says: HAProxy gives none over the master CLI.
const NO_REASON_ON_2_6: &str = "HAProxy rejected the new configuration and kept the running \
worker; this HAProxy gives no reason over the master CLI (`show startup-logs` and the `reload` \
status arrived in 2.7), so read the reason in the HAProxy master's own log (its stderr)";

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("master socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("master socket {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("reload failed: {log}")]
    ReloadFailed { log: String },
    #[error("reload did not complete within {timeout_ms} ms")]
    ReloadTimeout { timeout_ms: u64 },
}

impl MasterError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MasterError::Io { .. } | MasterError::ReloadTimeout { .. }
        )
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub old_worker: Option<u32>,
    pub new_worker: u32,
    pub took: Duration,
}

/// The master CLI's refusal of a reload while another is still starting its worker (3.1+).
const RELOAD_IN_PROGRESS: &str = "Another reload is still in progress";
/// How long to wait before asking again after that refusal.
const RELOAD_BUSY_RETRY: Duration = Duration::from_millis(50);

pub struct Master {
    path: PathBuf,
}

/// How a reload ended, as `show proc` tells it.
enum Outcome {
    NewWorker(u32),
    Failed { failed_reloads: u32 },
}

impl Master {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn show_proc(&self) -> Result<ProcList, MasterError> {
        self.show_proc_until(Instant::now() + REQUEST_TIMEOUT).await
    }

    /// Reload and wait until the new worker runs, or the reload is known to have failed.
    ///
    /// A failed reload leaves the old worker serving with the old config: the caller puts the
    /// last good files back (`render::Files::restore_good`) so that the next reload is safe.
    pub async fn reload(&self, timeout: Duration) -> Result<Reloaded, MasterError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let timeout_ms = crate::fields::ms(timeout);
        let before = self
            .show_proc_until(deadline.min(start + REQUEST_TIMEOUT))
            .await?;
        let old_worker = before.serving_worker().map(|w| w.pid);

        let mut reply = self.send_reload(deadline, timeout_ms).await?;
        // 3.1+ refuses a reload while the previous one (or the first start) is still bringing
        // its worker up: `Success=0` and this line, measured on 3.4.7 right after start. That
        // is no verdict on the config: ask again until the deadline.
        while reply
            .as_ref()
            .is_some_and(|r| !r.success && r.log.contains(RELOAD_IN_PROGRESS))
        {
            if Instant::now() + RELOAD_BUSY_RETRY >= deadline {
                return Err(MasterError::ReloadTimeout { timeout_ms });
            }
            debug!("haproxy: another reload is still in progress; asking again");
            tokio::time::sleep(RELOAD_BUSY_RETRY).await;
            reply = self.send_reload(deadline, timeout_ms).await?;
        }
        let outcome = match reply {
            // 2.7+: the master answers once the new worker is up, or with why it is not.
            // Not logged here: the caller reports the error (with the log) once.
            Some(reply) if !reply.success => {
                return Err(MasterError::ReloadFailed { log: reply.log });
            }
            Some(_) => self.wait(&before, deadline, false).await,
            // 2.6: the connection closed with no status; `show proc` tells the outcome.
            None => self.wait(&before, deadline, true).await,
        };
        let took = start.elapsed();
        match outcome {
            Some(Outcome::NewWorker(new_worker)) => {
                info!(
                    old_worker,
                    new_worker,
                    took_ms = crate::fields::ms(took),
                    "haproxy reloaded"
                );
                Ok(Reloaded {
                    old_worker,
                    new_worker,
                    took,
                })
            }
            Some(Outcome::Failed { failed_reloads }) => {
                debug!(
                    failed_reloads,
                    worker = old_worker,
                    "haproxy refused the new configuration"
                );
                Err(MasterError::ReloadFailed {
                    log: NO_REASON_ON_2_6.to_owned(),
                })
            }
            None => Err(MasterError::ReloadTimeout { timeout_ms }),
        }
    }

    fn io(&self, source: std::io::Error) -> MasterError {
        MasterError::Io {
            path: self.path.clone(),
            source,
        }
    }

    async fn show_proc_until(&self, deadline: Instant) -> Result<ProcList, MasterError> {
        let text = self.request("show proc", deadline).await?;
        parse_show_proc(&text).map_err(|source| MasterError::Parse {
            path: self.path.clone(),
            source,
        })
    }

    /// One command, one connection: send, end the input, read the reply to EOF.
    async fn request(&self, command: &str, deadline: Instant) -> Result<String, MasterError> {
        let exchange = async {
            let mut stream = UnixStream::connect(&self.path).await?;
            stream.write_all(format!("{command}\n").as_bytes()).await?;
            stream.shutdown().await?;
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).await?;
            Ok::<_, std::io::Error>(reply)
        };
        let reply = timeout_at(deadline, exchange)
            .await
            .map_err(|_| {
                self.io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no complete reply to `{command}`"),
                ))
            })?
            .map_err(|e| self.io(e))?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// Send `reload`. `Ok(None)`: the master took it and closed without a status (2.6).
    async fn send_reload(
        &self,
        deadline: Instant,
        timeout_ms: u64,
    ) -> Result<Option<ReloadReply>, MasterError> {
        let connect_by = deadline.min(Instant::now() + REQUEST_TIMEOUT);
        let mut stream = timeout_at(connect_by, UnixStream::connect(&self.path))
            .await
            .map_err(|_| {
                self.io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect for `reload`",
                ))
            })?
            .map_err(|e| self.io(e))?;
        stream
            .write_all(b"reload\n")
            .await
            .map_err(|e| self.io(e))?;
        // From here the reload is under way: a read that fails is the master re-executing
        // (2.6 drops the connection), not an error; `show proc` will tell.
        let read = async {
            // The 2.7+ master keeps the connection until the new worker is ready.
            let _ = stream.shutdown().await;
            let mut reply = Vec::new();
            match stream.read_to_end(&mut reply).await {
                Ok(_) => reply,
                Err(e) => {
                    debug!(error = %e, "reload connection dropped");
                    Vec::new()
                }
            }
        };
        let Ok(reply) = timeout_at(deadline, read).await else {
            return Err(MasterError::ReloadTimeout { timeout_ms });
        };
        let text = String::from_utf8_lossy(&reply);
        parse_reload_reply(&text).map_err(|source| MasterError::Parse {
            path: self.path.clone(),
            source,
        })
    }

    /// Poll `show proc` until a worker that was not there before is listed (success), or, when
    /// `watch_failures`, the failed count rose (failure). `None` at the deadline.
    async fn wait(
        &self,
        before: &ProcList,
        deadline: Instant,
        watch_failures: bool,
    ) -> Option<Outcome> {
        let known = |pid: u32| {
            before
                .workers
                .iter()
                .chain(&before.old_workers)
                .any(|w| w.pid == pid)
        };
        loop {
            let by = deadline.min(Instant::now() + REQUEST_TIMEOUT);
            match self.show_proc_until(by).await {
                Ok(now) => {
                    if let Some(new) = now.workers.iter().find(|w| !known(w.pid)) {
                        return Some(Outcome::NewWorker(new.pid));
                    }
                    if watch_failures && now.failed_reloads > before.failed_reloads {
                        return Some(Outcome::Failed {
                            failed_reloads: now.failed_reloads,
                        });
                    }
                }
                // The master refuses connections for a moment while it re-executes.
                Err(e) => debug!(error = %e, "show proc during reload"),
            }
            let next = Instant::now() + POLL_INTERVAL;
            if next >= deadline {
                return None;
            }
            tokio::time::sleep_until(next).await;
        }
    }
}

#[cfg(test)]
mod tests {
    //! A scripted master on a Unix socket: the 2.7+ protocol (which the HAProxy installed here,
    //! 2.6, does not speak) and the awkward moments of a 2.6 reload. The real 2.6 binary is
    //! exercised by `tests/reload.rs`.
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::UnixListener;

    fn show_proc(worker: u32, reloads: u32, failed: u32) -> String {
        format!(
            "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
             1               master          {reloads} [failed: {failed}]   0d00h00m10s     3.0.11-1\n\
             # workers\n\
             {worker}              worker          0               0d00h00m01s     3.0.11-1\n\
             \n"
        )
    }

    /// Serve each connection with `reply(command, how many `show proc` came before)`.
    fn fake_master(
        reply: impl Fn(&str, usize) -> String + Send + Sync + 'static,
    ) -> (tempfile::TempDir, Master) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let shows = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut input = String::new();
                if stream.read_to_string(&mut input).await.is_err() {
                    continue;
                }
                let command = input.trim_end();
                let n = if command == "show proc" {
                    shows.fetch_add(1, Ordering::SeqCst)
                } else {
                    shows.load(Ordering::SeqCst)
                };
                let _ = stream.write_all(reply(command, n).as_bytes()).await;
            }
        });
        (dir, Master::new(path))
    }

    #[tokio::test]
    async fn a_2_7_failure_reply_is_a_failed_reload_carrying_haproxys_log() {
        let (_dir, master) = fake_master(|command, _| {
            match command {
            "reload" => "Success=0\n--\n[ALERT]    (1) : config : parsing [/etc/haproxy/haproxy.cfg:9] : unknown keyword 'bogus'\n\n".into(),
            _ => show_proc(10, 0, 0),
        }
        });
        match master.reload(Duration::from_secs(5)).await {
            Err(MasterError::ReloadFailed { log }) => {
                assert!(log.contains("unknown keyword 'bogus'"), "{log}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reload_refused_because_another_is_in_progress_is_asked_again_not_failed() {
        // 3.4.7's reply to a reload sent while its worker was still starting (captured here).
        let reloads = Arc::new(AtomicUsize::new(0));
        let sent = reloads.clone();
        let (_dir, master) = fake_master(move |command, shows| match command {
            "reload" if sent.fetch_add(1, Ordering::SeqCst) < 2 => {
                "Success=0\n--\nAnother reload is still in progress.\n\n".into()
            }
            "reload" => "Success=1\n--\n[NOTICE]   (1) : Loading success.\n\n".into(),
            _ if shows == 0 => show_proc(10, 0, 0),
            _ => show_proc(11, 1, 0),
        });
        let reloaded = master.reload(Duration::from_secs(5)).await.unwrap();
        assert_eq!(reloaded.new_worker, 11);
        assert_eq!(
            reloads.load(Ordering::SeqCst),
            3,
            "asked until it was taken"
        );
    }

    #[tokio::test]
    async fn a_2_7_success_reply_is_confirmed_by_the_new_worker_in_show_proc() {
        let (_dir, master) = fake_master(|command, shows| match command {
            "reload" => "Success=1\n--\n[NOTICE]   (1) : Loading success.\n\n".into(),
            _ if shows == 0 => show_proc(10, 0, 0),
            _ => show_proc(11, 1, 0),
        });
        let reloaded = master.reload(Duration::from_secs(5)).await.unwrap();
        assert_eq!((reloaded.old_worker, reloaded.new_worker), (Some(10), 11));
    }

    #[tokio::test]
    async fn a_2_6_reload_is_followed_through_replies_cut_by_the_re_exec() {
        // No status; then two `show proc` cut short while the master re-executes.
        let (_dir, master) = fake_master(|command, shows| match (command, shows) {
            ("reload", _) => String::new(),
            (_, 0) => show_proc(10, 0, 0),
            (_, 1 | 2) => String::new(),
            _ => show_proc(11, 1, 0),
        });
        let reloaded = master.reload(Duration::from_secs(5)).await.unwrap();
        assert_eq!(reloaded.new_worker, 11);
    }

    #[tokio::test]
    async fn a_2_6_reload_that_raises_the_failed_count_is_a_failure_that_says_why_no_reason_is_given(
    ) {
        let (_dir, master) = fake_master(|command, shows| match (command, shows) {
            ("reload", _) => String::new(),
            (_, 0) => show_proc(10, 0, 0),
            _ => show_proc(10, 1, 1),
        });
        match master.reload(Duration::from_secs(5)).await {
            Err(MasterError::ReloadFailed { log }) => assert!(log.contains("2.7"), "{log}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reload_that_shows_no_outcome_times_out_as_a_transient_error() {
        let (_dir, master) = fake_master(|command, _| match command {
            "reload" => String::new(),
            _ => show_proc(10, 0, 0),
        });
        let err = master.reload(Duration::from_millis(300)).await.unwrap_err();
        assert!(
            matches!(err, MasterError::ReloadTimeout { timeout_ms: 300 }),
            "{err}"
        );
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn no_master_socket_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let master = Master::new(dir.path().join("absent.sock"));
        match master.reload(Duration::from_secs(1)).await {
            Err(MasterError::Io { path, .. }) => assert_eq!(path, dir.path().join("absent.sock")),
            other => panic!("{other:?}"),
        }
    }
}
