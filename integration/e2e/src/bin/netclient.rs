//! An HTTP client for tests that must send traffic from another network namespace (the
//! multi-node Swarm's switch namespace: `ip netns exec mn-sw netclient ...`), built on the
//! e2e crate's load generator.
//!
//!   netclient get ADDR HOST [COOKIE]      one GET; prints a JSON object
//!                                         {"status", "body", "set_cookie"}
//!   netclient load HOST EVERY_MS WORKERS ADDR...
//!                                         WORKERS keep-alive connections per ADDR, one GET
//!                                         each every EVERY_MS, until stdin closes; then prints
//!                                         one JSON object per ADDR: {"addr", "ok", "errors",
//!                                         "bad_status", "client_retries", "by_task", "samples"}
//!   netclient watch HOST EVERY_MS ADDR...
//!                                         one GET per ADDR every EVERY_MS (a new connection
//!                                         each), until stdin closes; prints a JSON line
//!                                         {"addr", "status", "task", "unix_ns"} for each ADDR's
//!                                         first answer and whenever its status or task changes
//!
//! Exit status 2 on bad arguments, 1 when a `get` cannot connect or read an answer.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use swarm_lb_e2e::load::{get_at, Load};

fn usage() -> ! {
    eprintln!(
        "usage: netclient get ADDR HOST [COOKIE] | netclient load HOST EVERY_MS WORKERS ADDR... | netclient watch HOST EVERY_MS ADDR..."
    );
    std::process::exit(2)
}

fn addr(raw: &str) -> SocketAddr {
    raw.parse().unwrap_or_else(|_| {
        eprintln!("netclient: {raw:?} is not ip:port");
        std::process::exit(2)
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("get") if args.len() == 3 || args.len() == 4 => {
            let headers = args
                .get(3)
                .map(|c| format!("Cookie: {c}\r\n"))
                .unwrap_or_default();
            match get_at(addr(&args[1]), &args[2], "/", &headers).await {
                Ok(r) => println!(
                    "{}",
                    json!({"status": r.status, "body": r.body, "set_cookie": r.set_cookie})
                ),
                Err(e) => {
                    eprintln!("netclient: GET {}: {e}", args[1]);
                    std::process::exit(1)
                }
            }
        }
        Some("load") if args.len() >= 5 => {
            let every: u64 = args[2].parse().unwrap_or_else(|_| usage());
            let workers: usize = args[3].parse().unwrap_or_else(|_| usage());
            let loads: Vec<(String, Load)> = args[4..]
                .iter()
                .map(|a| {
                    let l = Load::start_at(
                        addr(a),
                        &args[1],
                        "/",
                        workers,
                        Duration::from_millis(every),
                    );
                    (a.clone(), l)
                })
                .collect();
            // Runs until the test closes our stdin.
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
            })
            .await;
            for (a, l) in loads {
                let s = l.stop().await;
                println!(
                    "{}",
                    json!({
                        "addr": a, "ok": s.ok, "errors": s.errors, "bad_status": s.bad_status,
                        "client_retries": s.client_retries, "by_task": s.by_task,
                        "samples": s.samples,
                    })
                );
            }
        }
        Some("watch") if args.len() >= 4 => {
            let every: u64 = args[2].parse().unwrap_or_else(|_| usage());
            let every = Duration::from_millis(every);
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let watchers: Vec<_> = args[3..]
                .iter()
                .map(|a| {
                    let (a, host, stop) = (addr(a), args[1].clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut last: Option<(u16, String)> = None;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let began = tokio::time::Instant::now();
                            let get = get_at(a, &host, "/", "");
                            let seen = match tokio::time::timeout(Duration::from_secs(2), get).await {
                                Ok(Ok(r)) => {
                                    let task = r
                                        .body
                                        .lines()
                                        .find_map(|l| l.strip_prefix("task="))
                                        .unwrap_or_default()
                                        .to_owned();
                                    (r.status, task)
                                }
                                _ => (0, String::new()),
                            };
                            if last.as_ref() != Some(&seen) {
                                let unix_ns = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map_or(0, |d| d.as_nanos());
                                println!(
                                    "{}",
                                    json!({"addr": a.to_string(), "status": seen.0, "task": seen.1, "unix_ns": unix_ns.to_string()})
                                );
                                last = Some(seen);
                            }
                            tokio::time::sleep_until(began + every).await;
                        }
                    })
                })
                .collect();
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
            })
            .await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for w in watchers {
                let _ = w.await;
            }
        }
        _ => usage(),
    }
}
