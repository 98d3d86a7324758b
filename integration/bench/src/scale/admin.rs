//! The admin socket as the bench sees it: a counting relay between swarm-lb and HAProxy (the
//! bytes swarm-lb reads from the Runtime API, and writes to it), and the bench's own reads of
//! what HAProxy holds, on the real socket, each on a new connection (not counted).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use swarm_lb::haproxy::codec;
use swarm_lb::haproxy::Admin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Bytes through the relay, each way.
#[derive(Debug, Default)]
pub struct Counts {
    /// HAProxy -> swarm-lb: replies swarm-lb read.
    pub read: AtomicU64,
    /// swarm-lb -> HAProxy: commands.
    pub written: AtomicU64,
}

/// Listens on `front` (the path swarm-lb is given) and relays every connection to `back`
/// (where HAProxy's `stats socket` is), counting bytes. Runs until the runtime ends.
pub fn relay(front: &Path, back: PathBuf) -> anyhow::Result<Arc<Counts>> {
    let _ = std::fs::remove_file(front);
    let listener = UnixListener::bind(front)
        .with_context(|| format!("binding the admin relay on {}", front.display()))?;
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let back = back.clone();
            let c = c.clone();
            tokio::spawn(async move {
                // HAProxy refusing: the client sees its connection close, as it would.
                let Ok(server) = UnixStream::connect(&back).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = pump(cr, sw, c.clone(), true);
                let down = pump(sr, cw, c, false);
                tokio::join!(up, down);
            });
        }
    });
    Ok(counts)
}

async fn pump(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    counts: Arc<Counts>,
    upstream: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let counter = if upstream {
            &counts.written
        } else {
            &counts.read
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

/// One command on a new connection (non-interactive: HAProxy answers, then closes).
pub async fn ask(admin: &Path, command: &str, within: Duration) -> anyhow::Result<String> {
    let exchange = async {
        let mut s = UnixStream::connect(admin).await?;
        s.write_all(format!("{command}\n").as_bytes()).await?;
        let mut buf = Vec::with_capacity(64 * 1024);
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(within, exchange)
        .await
        .with_context(|| format!("`{command}` took more than {within:?}"))??;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Whether the hosts map answers `key` (`get map`: HAProxy's own lookup, whatever the map's
/// size).
pub async fn map_has(admin: &Path, map: &Path, key: &str) -> anyhow::Result<bool> {
    let reply = ask(
        admin,
        &format!("get map {} {key}", map.display()),
        Duration::from_secs(5),
    )
    .await?;
    Ok(reply.contains("found=yes"))
}

/// Keys of the hosts map.
pub async fn map_keys(admin: &Path, map: &Path) -> anyhow::Result<Vec<String>> {
    let reply = ask(
        admin,
        &format!("show map {}", map.display()),
        Duration::from_secs(30),
    )
    .await?;
    Ok(codec::parse_show_map(&reply)?
        .into_iter()
        .map(|e| e.key)
        .collect())
}

/// Every server HAProxy holds ready (admin state), as (backend, address).
pub async fn ready_servers(admin: &Path) -> anyhow::Result<BTreeSet<(String, IpAddr)>> {
    let reply = ask(admin, "show servers state", Duration::from_secs(60)).await?;
    Ok(codec::parse_servers_state(&reply)?
        .into_iter()
        .filter(|r| codec::admin_from_bits(r.admin_state) == Admin::Ready)
        .map(|r| (r.backend.to_string(), r.addr))
        .collect())
}
