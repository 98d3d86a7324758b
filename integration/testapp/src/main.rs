//! `testapp [--host ADDR] [--port N]` (or HOST / PORT; defaults 0.0.0.0 and 8080).
//! Prints `testapp listening on <addr>` once bound; exits 0 after draining on SIGTERM or SIGINT.
//!
//! `testapp fail on|off`: tells the testapp listening on 127.0.0.1:$PORT to answer every
//! request 500 from now on, or to stop; `testapp fail-health on|off`: only its `/health`
//! answers 503. For `docker exec` into a task (the image has no shell).
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use testapp::{Server, TaskInfo};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

const USAGE: &str =
    "usage: testapp [--host ADDR] [--port N]   (env HOST, PORT; VERSION, TASK_NAME)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if let Some(what @ ("fail" | "fail-health")) = args.peek().map(String::as_str) {
        let what = what.to_owned();
        let on = match args.nth(1).as_deref() {
            Some("on") => true,
            Some("off") => false,
            _ => {
                eprintln!("testapp: usage: testapp {what} on|off");
                return ExitCode::from(2);
            }
        };
        return match set_failing(&what, on) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("testapp: fail {on}: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let addr = match listen_addr(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(msg) => {
            eprintln!("testapp: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("testapp: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("testapp: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let info = TaskInfo::from_env();
    let server = Server::new(listener, info.clone());
    let bound = server.local_addr()?;
    let in_flight = server.in_flight();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.run(shutdown.clone()));

    // Tests read this line to learn the port; flush so a pipe sees it at once.
    let mut out = std::io::stdout();
    writeln!(
        out,
        "testapp listening on {bound} task={} version={}",
        info.task,
        info.version.as_deref().unwrap_or("-")
    )?;
    out.flush()?;

    let signal_name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    eprintln!(
        "testapp: {signal_name}: draining, {} request(s) in flight",
        in_flight.get()
    );
    shutdown.cancel();
    serving
        .await
        .map_err(|err| std::io::Error::other(format!("server task failed: {err}")))??;
    eprintln!("testapp: drained, exiting");
    Ok(())
}

fn listen_addr(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let mut port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--host" => host = args.next().ok_or("--host needs a value")?,
            "--port" => port = args.next().ok_or("--port needs a value")?,
            "-h" | "--help" => return Err("help".to_owned()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("host {host} is not an IP address"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port} is not a port number"))?;
    Ok(SocketAddr::new(ip, port))
}

/// `GET /admin/<what>?on=1|0` (`fail`, `fail-health`) to the testapp of this container
/// (127.0.0.1:$PORT).
fn set_failing(what: &str, on: bool) -> std::io::Result<()> {
    use std::io::Read;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let flag = if on { 1 } else { 0 };
    write!(
        stream,
        "GET /admin/{what}?on={flag} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    if reply.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected reply: {}",
            reply.lines().next().unwrap_or("")
        )))
    }
}
