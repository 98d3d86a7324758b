//! The HTTP/1.1 server: routes, websocket echo and the drain on shutdown.
//!
//! Shutdown contract (what the end-to-end tests rely on when Swarm stops a task): once the token
//! is cancelled the listener is closed at once, so new connections are refused; requests already
//! being served run to completion and their responses say `connection: close`; idle keep-alive
//! connections are closed; websockets get a close frame `1001 going away`. `run` returns when
//! the last connection is gone.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::info::TaskInfo;

/// Longest `/slow` sleep accepted: an hour, far beyond any test, short of a typo's eternity.
pub const MAX_SLOW_MS: u64 = 3_600_000;

/// How long a websocket peer gets to answer our close frame before the socket is dropped.
const WS_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Pause after an accept error that is not about one connection (e.g. out of file descriptors),
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

type Body = Full<Bytes>;

/// Count of HTTP requests being answered right now (websockets excluded). Tests poll it to know
/// a slow request has reached the server before they start a shutdown.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }
}

struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every connection needs; cloned into each.
#[derive(Clone)]
struct Shared {
    info: Arc<TaskInfo>,
    in_flight: InFlight,
    /// Set by `GET /admin/fail?on=1`: every other request answers 500 (a task gone bad).
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Set by `GET /admin/fail-health?on=1`: `/health` answers 503, everything else as usual
    /// (a task its health check should take out before any request fails).
    health_failing: Arc<std::sync::atomic::AtomicBool>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

pub struct Server {
    listener: TcpListener,
    info: Arc<TaskInfo>,
    in_flight: InFlight,
}

impl Server {
    pub fn new(listener: TcpListener, info: TaskInfo) -> Self {
        Server {
            listener,
            info: Arc::new(info),
            in_flight: InFlight::default(),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains (see the module doc) and returns.
    pub async fn run(self, shutdown: CancellationToken) -> io::Result<()> {
        let shared = Shared {
            info: self.info,
            in_flight: self.in_flight,
            failing: Arc::default(),
            health_failing: Arc::default(),
            shutdown: shutdown.clone(),
            tracker: TaskTracker::new(),
        };
        let listener = self.listener;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared2 = shared.clone();
                        shared.tracker.spawn(serve_connection(stream, peer, shared2));
                    }
                    Err(err) if is_connection_error(&err) => {}
                    Err(err) => {
                        eprintln!("testapp: accept failed: {err}");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
            }
        }
        // Closing the listening socket is what makes new connections fail fast (RST) while the
        // old ones drain.
        drop(listener);
        shared.tracker.close();
        shared.tracker.wait().await;
        Ok(())
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Shared) {
    let local = match stream.local_addr() {
        Ok(addr) => addr,
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    let shutdown = shared.shutdown.clone();
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(req, local, peer, shared).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            // Finishes the request in progress (answering with `connection: close`), or closes
            // the connection now if it is idle between requests.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Clients that go away mid-request are normal for a test workload; not worth a log line.
    let _ = result;
}

async fn route(
    req: Request<Incoming>,
    local: SocketAddr,
    peer: SocketAddr,
    shared: Shared,
) -> Response<Body> {
    let _guard = shared.in_flight.enter();
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned());
    }
    let path = req.uri().path();
    if path == "/admin/fail" {
        let on = req.uri().query() == Some("on=1");
        shared.failing.store(on, Ordering::SeqCst);
        return text(StatusCode::OK, format!("failing={on}\n"));
    }
    if path == "/admin/fail-health" {
        let on = req.uri().query() == Some("on=1");
        shared.health_failing.store(on, Ordering::SeqCst);
        return text(StatusCode::OK, format!("health_failing={on}\n"));
    }
    if shared.failing.load(Ordering::SeqCst) {
        let mut body = shared.info.render(local, peer);
        body.push_str("failing=true\n");
        return text(StatusCode::INTERNAL_SERVER_ERROR, body);
    }
    match path {
        "/" if !shared.info.echo_paths => text(StatusCode::OK, shared.info.render(local, peer)),
        // A page worth compressing: 4 KiB of text (a proxy may leave a few bytes alone).
        "/text" => text(
            StatusCode::OK,
            "<p>a page of text that compresses well</p>\n".repeat(100),
        ),
        "/health" if shared.health_failing.load(Ordering::SeqCst) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n".to_owned())
        }
        "/health" => text(StatusCode::OK, "ok\n".to_owned()),
        // The request's headers as it arrived (what the edge added or removed), one
        // `header.<lower-case name>=<value>` line each, after who served it.
        "/headers" => {
            let mut body = shared.info.render(local, peer);
            for (name, value) in req.headers() {
                body.push_str(&format!(
                    "header.{}={}\n",
                    name.as_str(),
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            text(StatusCode::OK, body)
        }
        // This request is one of them; report the others.
        "/stats" => text(
            StatusCode::OK,
            format!("in_flight={}\n", shared.in_flight.get().saturating_sub(1)),
        ),
        "/slow" => match slow_ms(req.uri().query()) {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let mut body = shared.info.render(local, peer);
                body.push_str(&format!("slept_ms={ms}\n"));
                text(StatusCode::OK, body)
            }
            Err(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
        },
        "/ws" => websocket(req, shared),
        // Any other path under /echo (and, with ECHO_PATHS=1, any path at all, `/` included)
        // answers who served it and the request target it received: what path routing
        // delivered.
        _ if path.starts_with("/echo") || shared.info.echo_paths => {
            let mut body = shared.info.render(local, peer);
            let target = req.uri().path_and_query().map_or(path, |pq| pq.as_str());
            body.push_str(&format!("path={target}\n"));
            text(StatusCode::OK, body)
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

/// `ms=N` from the query string of `/slow`.
pub fn slow_ms(query: Option<&str>) -> Result<u64, String> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .ok_or_else(|| "missing ms=<milliseconds>".to_owned())?;
    let ms: u64 = value
        .parse()
        .map_err(|_| format!("ms={value} is not a number of milliseconds"))?;
    if ms > MAX_SLOW_MS {
        return Err(format!("ms={ms} is above the limit of {MAX_SLOW_MS}"));
    }
    Ok(ms)
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn websocket(mut req: Request<Incoming>, shared: Shared) -> Response<Body> {
    let headers = req.headers();
    let wants_upgrade = header_has_token(headers.get(header::CONNECTION), "upgrade")
        && header_has_token(headers.get(header::UPGRADE), "websocket");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let key = match (wants_upgrade, key) {
        (true, Some(key)) => key,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "expected a websocket upgrade\n".to_owned(),
            )
        }
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = shared.shutdown.clone();
    shared.tracker.spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            echo(ws, shutdown).await;
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    match HeaderValue::from_str(&accept) {
        Ok(value) => {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, value);
            resp
        }
        // base64 is always a valid header value; kept as an error path rather than a panic.
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "bad accept key\n".into()),
    }
}

fn header_has_token(value: Option<&HeaderValue>, token: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

async fn echo<S>(mut ws: WebSocketStream<S>, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    if ws.send(msg).await.is_err() {
                        return;
                    }
                }
                // Pings are answered and close frames acknowledged by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            () = shutdown.cancelled() => break,
        }
    }
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "server shutting down".into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    // Wait for the peer's close frame (or the end of the stream), bounded.
    let _ = tokio::time::timeout(WS_CLOSE_GRACE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_takes_its_milliseconds_from_the_query() {
        assert_eq!(slow_ms(Some("ms=250")), Ok(250));
        assert_eq!(slow_ms(Some("a=1&ms=0&b=2")), Ok(0));
    }

    #[test]
    fn slow_without_a_number_is_refused_with_a_reason() {
        assert!(slow_ms(None).unwrap_err().contains("missing"));
        assert!(slow_ms(Some("ms=soon"))
            .unwrap_err()
            .contains("not a number"));
        assert!(slow_ms(Some("ms=-1")).is_err());
    }

    #[test]
    fn slow_refuses_sleeps_above_the_limit() {
        assert!(slow_ms(Some(&format!("ms={}", MAX_SLOW_MS + 1)))
            .unwrap_err()
            .contains("limit"));
    }

    #[test]
    fn upgrade_tokens_are_matched_in_lists_and_without_case() {
        let v = HeaderValue::from_static("keep-alive, Upgrade");
        assert!(header_has_token(Some(&v), "upgrade"));
        assert!(!header_has_token(Some(&v), "websocket"));
        assert!(!header_has_token(None, "upgrade"));
    }
}
