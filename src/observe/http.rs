//! The HTTP listener (`--listen`, default `127.0.0.1:9270`): `/metrics` (OpenMetrics text),
//! `/healthz` (200 while the reconciler loop is alive), `/readyz` (200 once a pass succeeded
//! and Docker and HAProxy answer; 503 with the reasons otherwise), `/status` (the
//! [`Status`] as JSON, read from HAProxy's admin socket per request, at most
//! [`STATUS_READS`] at once) and `/` (the same [`Status`] as an HTML page, [`super::page`],
//! served with a Content-Security-Policy that allows no script). Plain hyper HTTP/1.1, one task per connection. Also the small client `swarm-lb status` and `swarm-lb health`
//! use.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use super::status::{self, Status};
use super::{metrics, page, Observer};
use crate::haproxy::{codec, AdminClient, MapPath, Query};

/// Where `/status` reads HAProxy.
#[derive(Debug, Clone)]
pub struct StatusSource {
    pub admin_socket: PathBuf,
    pub hosts_map: MapPath,
}

/// How long `/status` waits for HAProxy, and a client for the daemon.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `/status` reads of HAProxy at once, at most; more requests wait (up to [`TIMEOUT`]) for one
/// to finish. HAProxy's stats socket takes 10 sessions by default (`stats maxconn`), and the
/// reconciler needs one, again at once after every reload: a burst of status requests must
/// never take them all. Each read stays live (server health changes between passes), which
/// serving the reconciler's last read would not be.
pub const STATUS_READS: usize = 2;

/// The status source and the permits of its reads.
struct Reader {
    source: StatusSource,
    permits: Semaphore,
}

/// Serve until the listener fails (never, in practice). Each connection gets its own task.
pub async fn serve(listener: TcpListener, observer: Arc<Observer>, source: StatusSource) {
    let source = Arc::new(Reader {
        source,
        permits: Semaphore::new(STATUS_READS),
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, say: retry shortly rather than spin.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (observer, source) = (observer.clone(), source.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (observer, source) = (observer.clone(), source.clone());
                async move { Ok::<_, Infallible>(route(req, &observer, &source).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "observe connection ended");
            }
        });
    }
}

fn reply(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The status page's policy: nothing may load or run (no script, image, font, frame or
/// form target), only the page's own `<style>` applies. Escaping keeps label values out of
/// the markup; this keeps a slip in it from running anything.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
                            base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The status page, or why HAProxy could not be read (as text, 503).
fn page_reply(status: Result<Status, String>) -> Response<Full<Bytes>> {
    let mut r = match status {
        Ok(s) => reply(StatusCode::OK, page::CONTENT_TYPE, page::render_html(&s)),
        Err(e) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            format!("cannot read HAProxy: {e}\n"),
        ),
    };
    let headers = r.headers_mut();
    for (name, value) in [
        ("content-security-policy", PAGE_CSP),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, hyper::header::HeaderValue::from_static(value));
    }
    r
}

async fn route(
    req: Request<Incoming>,
    observer: &Observer,
    source: &Reader,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n");
    }
    match req.uri().path() {
        "/" => page_reply(status_of(observer, source).await),
        "/metrics" => reply(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            observer.metrics.encode(),
        ),
        "/healthz" => {
            let h = observer.health();
            if h.alive {
                reply(StatusCode::OK, TEXT, "ok\n")
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    h.reasons.join("\n") + "\n",
                )
            }
        }
        "/readyz" => {
            let h = observer.health();
            if h.ready {
                reply(StatusCode::OK, TEXT, "ready\n")
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    h.reasons.join("\n") + "\n",
                )
            }
        }
        "/status" => match status_of(observer, source).await {
            Ok(s) => match serde_json::to_vec(&s) {
                Ok(body) => reply(StatusCode::OK, "application/json", body),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
            },
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("cannot read HAProxy: {e}\n"),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /, /metrics, /healthz, /readyz, /status\n",
        ),
    }
}

/// `show servers state` and `show map` on a session of its own (the reconciler's is not
/// shared), joined with the daemon's last snapshot and label problems. Waits for one of the
/// [`STATUS_READS`] permits, within the same [`TIMEOUT`].
async fn status_of(observer: &Observer, reader: &Reader) -> Result<Status, String> {
    let _permit = tokio::time::timeout(TIMEOUT, reader.permits.acquire())
        .await
        .map_err(|_| {
            format!(
                "busy: {STATUS_READS} status reads in flight for {} s",
                TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| e.to_string())?;
    let source = &reader.source;
    let (snap, problems) = observer.status_inputs();
    let mut rt = AdminClient::new(&source.admin_socket).with_timeout(TIMEOUT);
    let replies = rt
        .query(&[
            Query::ShowServersState { backend: None },
            Query::ShowMap {
                map: source.hosts_map.clone(),
            },
        ])
        .await
        .map_err(|e| e.to_string())?;
    let [servers, map] = <[_; 2]>::try_from(replies).map_err(|_| "short reply".to_owned())?;
    let servers = servers.map_err(|e| e.to_string())?;
    let rows = codec::parse_servers_state(&servers).map_err(|e| e.to_string())?;
    // A map HAProxy does not know yet (no routed host) is an empty map.
    let entries = match map {
        Ok(text) => codec::parse_show_map(&text).map_err(|e| e.to_string())?,
        Err(_) => Vec::new(),
    };
    let mut status = status::build(snap.as_deref(), &rows, &entries, &problems);
    status.hints = observer.hint_sources();
    let (passes, certificates, at) = observer.status_extras();
    status.passes = Some(passes);
    status.certificates = certificates;
    status.at = at;
    Ok(status)
}

/// Errors of [`get`], each saying what to check.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cause is in the message (not a `source`), so it is printed once.
    #[error("swarm-lb is not reachable at {addr} ({error}); is `swarm-lb run` running with --listen {addr}?")]
    Connect {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("swarm-lb at {addr} did not answer within {} s", TIMEOUT.as_secs())]
    Timeout { addr: SocketAddr },
    #[error("talking to swarm-lb at {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

/// `GET path` from a swarm-lb listening at `addr` (an unspecified address means this host):
/// the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), ClientError> {
    let addr = if addr.ip().is_unspecified() {
        let lo: std::net::IpAddr = match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        SocketAddr::new(lo, addr.port())
    } else {
        addr
    };
    tokio::time::timeout(TIMEOUT, exchange(addr, path))
        .await
        .map_err(|_| ClientError::Timeout { addr })?
}

async fn exchange(addr: SocketAddr, path: &str) -> Result<(u16, String), ClientError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| ClientError::Connect { addr, error })?;
    let http = |source| ClientError::Http { addr, source };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Connect {
            addr,
            error: std::io::Error::other(e),
        })?;
    let res = sender.send_request(req).await.map_err(http)?;
    let code = res.status().as_u16();
    let body = res.into_body().collect().await.map_err(http)?.to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}
