//! The `testapp` binary as Swarm runs it: configured by environment, stopped by SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use common::{eventually, refuses_connections, within, Conn, DEADLINE};

/// Kills the child if a test fails before it exits.
struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_app() -> (App, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testapp"))
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("VERSION", "9")
        .env("TASK_NAME", "bin.1.xyz")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn testapp");
    let stdout = child.stdout.take().expect("stdout piped");
    let app = App(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .strip_prefix("testapp listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(line.contains("version=9"), "{line}");
    (app, addr)
}

fn sigterm(app: &App) {
    let status = Command::new("kill")
        .args(["-TERM", &app.0.id().to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -TERM failed: {status}");
}

async fn exit_status(app: &mut App) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = app.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "testapp did not exit after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_binary_takes_its_identity_from_the_environment() {
    let (mut app, addr) = spawn_app();
    let mut conn = Conn::open(addr).await.expect("connect");
    let resp = within("GET /", conn.get("/")).await.expect("response");
    assert_eq!(resp.field("task"), Some("bin.1.xyz"));
    assert_eq!(resp.field("version"), Some("9"));
    drop(conn);
    sigterm(&app);
    assert!(exit_status(&mut app).await.success());
}

#[tokio::test]
async fn on_sigterm_the_binary_finishes_a_slow_request_refuses_new_ones_and_exits_zero() {
    let (mut app, addr) = spawn_app();
    let mut slow = Conn::open(addr).await.expect("connect");
    slow.send("/slow?ms=1000").await.expect("send");
    // Only signal once the server holds the request, or the signal could beat the accept.
    eventually("slow request in flight", || async {
        match Conn::open(addr).await {
            Ok(mut c) => {
                matches!(c.get("/stats").await, Ok(r) if r.field("in_flight") == Some("1"))
            }
            Err(_) => false,
        }
    })
    .await;

    sigterm(&app);
    eventually("new connections refused", || refuses_connections(addr)).await;
    let resp = within("slow response", slow.read_response())
        .await
        .expect("the in-flight request is answered after SIGTERM");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.field("slept_ms"), Some("1000"));
    let status = exit_status(&mut app).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[test]
fn the_binary_rejects_an_unknown_argument_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_testapp"))
        .arg("--bogus")
        .output()
        .expect("run testapp");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: testapp"));
}
