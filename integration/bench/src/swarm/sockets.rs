//! Long-lived connections through the churn: websockets to a service the churn never touches.
//!
//! A reload hands every open connection to the old worker, which HAProxy stops after
//! `mworker-max-reloads` further reloads (3 in base.cfg) or after `hard-stop-after` (5 m): a
//! driver that reloads for every change cuts connections to services that did not change at
//! all. Each socket sends a message every [`EVERY`] and expects its echo (testapp's `/ws`);
//! a socket that fails is counted as cut, with the time it failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// How often each socket sends a message.
pub const EVERY: Duration = Duration::from_secs(1);
/// How long an echo may take.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// Open sockets, each on its own task until [`Sockets::close`].
pub struct Sockets {
    opened: Instant,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Option<Cut>>,
}

/// A socket that failed: when (after opening all of them) and why.
#[derive(Debug, Clone)]
pub struct Cut {
    pub after: Duration,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub opened: usize,
    pub cut: Vec<Cut>,
}

/// Opens `n` websockets to `ws://<host>/ws` through HAProxy on 127.0.0.1:`port`.
pub async fn open(port: u16, host: &str, n: usize) -> anyhow::Result<Sockets> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    let opened = Instant::now();
    for i in 0..n {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .context("connecting to HAProxy")?;
        let url = format!("ws://{host}/ws");
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .with_context(|| format!("websocket handshake {i} with {url}"))?;
        let stop = stop.clone();
        tasks.spawn(async move { keep(ws, stop, opened).await });
    }
    Ok(Sockets {
        opened,
        stop,
        tasks,
    })
}

async fn keep<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    stop: Arc<AtomicBool>,
    opened: Instant,
) -> Option<Cut>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let cut = |reason: String| {
        Some(Cut {
            after: opened.elapsed(),
            reason,
        })
    };
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let text = seq.to_string();
        if let Err(e) = ws.send(Message::Text(text.clone().into())).await {
            return cut(format!("send: {e}"));
        }
        match tokio::time::timeout(ECHO_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => {}
            Ok(Some(Ok(other))) => return cut(format!("unexpected message {other:?}")),
            Ok(Some(Err(e))) => return cut(format!("receive: {e}")),
            Ok(None) => return cut("closed".to_owned()),
            Err(_) => return cut(format!("no echo within {ECHO_TIMEOUT:?}")),
        }
        tokio::time::sleep(EVERY).await;
    }
    let _ = ws.close(None).await;
    None
}

impl Sockets {
    /// Stops every socket and says which were cut before.
    pub async fn close(mut self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        let opened = self.tasks.len();
        let mut summary = Summary {
            opened,
            ..Summary::default()
        };
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok(Some(cut)) => summary.cut.push(cut),
                Ok(None) => {}
                Err(e) => summary.cut.push(Cut {
                    after: self.opened.elapsed(),
                    reason: format!("socket task failed: {e}"),
                }),
            }
        }
        summary.cut.sort_by_key(|c| c.after);
        summary
    }
}
