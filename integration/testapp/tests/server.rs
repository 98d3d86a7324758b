//! The server on 127.0.0.1:0 with real sockets: endpoints and the drain on shutdown.

mod common;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{eventually, refuses_connections, within, Conn};
use futures_util::{SinkExt, StreamExt};
use testapp::{InFlight, Server, TaskInfo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

struct Running {
    addr: SocketAddr,
    in_flight: InFlight,
    shutdown: CancellationToken,
    done: JoinHandle<io::Result<()>>,
}

impl Running {
    async fn start() -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let info = TaskInfo {
            task: "web.3.abc".into(),
            hostname: "cafe01".into(),
            version: Some("7".into()),
            ips: vec![Ipv4Addr::new(10, 0, 9, 3)],
            echo_paths: false,
        };
        let server = Server::new(listener, info);
        let addr = server.local_addr().expect("local addr");
        let in_flight = server.in_flight();
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(server.run(shutdown.clone()));
        Running {
            addr,
            in_flight,
            shutdown,
            done,
        }
    }

    async fn wait_in_flight(&self, n: usize) {
        eventually("requests in flight", || async { self.in_flight.get() == n }).await;
    }

    async fn stopped(self) {
        let result = within("server stop", self.done).await.expect("join");
        result.expect("server run");
    }
}

#[tokio::test]
async fn root_names_the_task_its_version_and_the_address_the_connection_came_in_on() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let resp = within("GET /", conn.get("/")).await.expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.field("task"), Some("web.3.abc"));
    assert_eq!(resp.field("hostname"), Some("cafe01"));
    assert_eq!(resp.field("version"), Some("7"));
    assert_eq!(resp.field("ips"), Some("10.0.9.3"));
    assert_eq!(resp.field("local"), Some(app.addr.to_string().as_str()));
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn health_answers_ok_and_unknown_paths_are_not_found() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let health = within("GET /health", conn.get("/health"))
        .await
        .expect("resp");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let missing = within("GET /nope", conn.get("/nope")).await.expect("resp");
    assert_eq!(missing.status, 404);
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn a_keep_alive_connection_serves_several_requests() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    for _ in 0..3 {
        let resp = within("GET /", conn.get("/")).await.expect("response");
        assert_eq!(resp.status, 200);
        assert_ne!(resp.header("connection"), Some("close"));
    }
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn slow_answers_no_sooner_than_asked_and_says_how_long_it_slept() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let start = Instant::now();
    let resp = within("GET /slow", conn.get("/slow?ms=150"))
        .await
        .expect("response");
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.field("slept_ms"), Some("150"));
    assert_eq!(resp.field("task"), Some("web.3.abc"));
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn slow_without_a_number_of_milliseconds_is_a_bad_request() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let resp = within("GET /slow", conn.get("/slow?ms=later"))
        .await
        .expect("response");
    assert_eq!(resp.status, 400);
    assert!(resp.body.contains("not a number"), "{}", resp.body);
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn stats_counts_the_other_requests_in_flight() {
    let app = Running::start().await;
    let mut slow = Conn::open(app.addr).await.expect("connect");
    slow.send("/slow?ms=300").await.expect("send");
    app.wait_in_flight(1).await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let stats = within("GET /stats", conn.get("/stats"))
        .await
        .expect("resp");
    assert_eq!(stats.field("in_flight"), Some("1"));
    within("slow response", slow.read_response())
        .await
        .expect("slow response");
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn websocket_echoes_text_and_binary_messages() {
    let app = Running::start().await;
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let url = format!("ws://{}/ws", app.addr);
    let (mut ws, resp) = within("ws handshake", tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("handshake");
    assert_eq!(resp.status().as_u16(), 101);
    ws.send(Message::text("hello")).await.expect("send text");
    let echoed = within("text echo", ws.next())
        .await
        .expect("open")
        .expect("ok");
    assert_eq!(echoed, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let echoed = within("binary echo", ws.next())
        .await
        .expect("open")
        .expect("ok");
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.expect("close");
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn a_plain_get_on_the_websocket_path_is_a_bad_request() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let resp = within("GET /ws", conn.get("/ws")).await.expect("response");
    assert_eq!(resp.status, 400);
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_slow_request_finish_and_closes_its_connection() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    conn.send("/slow?ms=400").await.expect("send");
    app.wait_in_flight(1).await;

    app.shutdown.cancel();
    let resp = within("slow response", conn.read_response())
        .await
        .expect("the in-flight request is answered");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.field("slept_ms"), Some("400"));
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(within("close", conn.closed_by_server()).await);
    app.stopped().await;
}

#[tokio::test]
async fn shutdown_refuses_new_connections_while_old_requests_drain() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    conn.send("/slow?ms=1000").await.expect("send");
    app.wait_in_flight(1).await;

    app.shutdown.cancel();
    let addr = app.addr;
    eventually("new connections refused", || refuses_connections(addr)).await;
    assert_eq!(
        app.in_flight.get(),
        1,
        "the slow request is still being served"
    );
    let resp = within("slow response", conn.read_response())
        .await
        .expect("response");
    assert_eq!(resp.status, 200);
    app.stopped().await;
}

#[tokio::test]
async fn shutdown_closes_an_idle_keep_alive_connection() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let resp = within("GET /", conn.get("/")).await.expect("response");
    assert_eq!(resp.status, 200);

    app.shutdown.cancel();
    assert!(within("idle close", conn.closed_by_server()).await);
    app.stopped().await;
}

#[tokio::test]
async fn shutdown_sends_going_away_to_websockets() {
    let app = Running::start().await;
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let url = format!("ws://{}/ws", app.addr);
    let (mut ws, _) = within("ws handshake", tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("handshake");
    ws.send(Message::text("ping")).await.expect("send");
    within("echo", ws.next()).await.expect("open").expect("ok");

    app.shutdown.cancel();
    let msg = within("close frame", ws.next())
        .await
        .expect("a message")
        .expect("ok");
    match msg {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // Reading on lets tungstenite answer the close; then the server is done.
    while let Some(Ok(_)) = within("end of stream", ws.next()).await {}
    app.stopped().await;
}

#[tokio::test]
async fn shutdown_with_nothing_in_flight_returns_at_once() {
    let app = Running::start().await;
    app.shutdown.cancel();
    let addr = app.addr;
    app.stopped().await;
    assert!(refuses_connections(addr).await);
}

#[tokio::test]
async fn told_to_fail_it_answers_500_until_told_to_stop_and_echo_paths_show_the_target() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let echo = within("GET /echo/x?q=1", conn.get("/echo/x?q=1"))
        .await
        .expect("resp");
    assert_eq!(echo.status, 200);
    assert!(echo.body.contains("path=/echo/x?q=1\n"), "{}", echo.body);
    let on = within("fail on", conn.get("/admin/fail?on=1"))
        .await
        .expect("resp");
    assert_eq!((on.status, on.body.as_str()), (200, "failing=true\n"));
    let failed = within("GET /", conn.get("/")).await.expect("resp");
    assert_eq!(failed.status, 500);
    assert!(failed.body.contains("failing=true"), "{}", failed.body);
    let off = within("fail off", conn.get("/admin/fail?on=0"))
        .await
        .expect("resp");
    assert_eq!(off.status, 200);
    let ok = within("GET /", conn.get("/")).await.expect("resp");
    assert_eq!(ok.status, 200);
    app.shutdown.cancel();
    app.stopped().await;
}

#[tokio::test]
async fn told_to_fail_its_health_only_health_answers_503_and_headers_are_echoed() {
    let app = Running::start().await;
    let mut conn = Conn::open(app.addr).await.expect("connect");
    let on = within("fail-health on", conn.get("/admin/fail-health?on=1"))
        .await
        .expect("resp");
    assert_eq!(
        (on.status, on.body.as_str()),
        (200, "health_failing=true\n")
    );
    let health = within("GET /health", conn.get("/health"))
        .await
        .expect("resp");
    assert_eq!((health.status, health.body.as_str()), (503, "unhealthy\n"));
    let root = within("GET /", conn.get("/")).await.expect("resp");
    assert_eq!(root.status, 200, "the rest still serves");
    let page = within("GET /text", conn.get("/text")).await.expect("resp");
    assert_eq!(page.status, 200);
    assert!(page.body.len() >= 4096, "{}", page.body.len());
    let headers = within("GET /headers", conn.get("/headers"))
        .await
        .expect("resp");
    assert_eq!(headers.status, 200);
    assert!(
        headers.body.contains("header.host="),
        "the request's own headers: {}",
        headers.body
    );
    let off = within("fail-health off", conn.get("/admin/fail-health?on=0"))
        .await
        .expect("resp");
    assert_eq!(off.status, 200);
    let health = within("GET /health", conn.get("/health"))
        .await
        .expect("resp");
    assert_eq!(health.status, 200);
    app.shutdown.cancel();
    app.stopped().await;
}
