//! A fake Docker engine on a unix socket (fixed lists, scripted event streams), and the test
//! that needs real HTTP: [`Docker`]'s two engines on a worker edge, as the watcher opens them.
//! The watcher's own tests use the in-memory engine of `source.rs` on the paused clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Docker, WatchOptions, Watcher};
use crate::model::Snapshot;

/// A fake engine on a unix socket: fixed lists (tasks replaceable), and an event stream
/// per connection that waits for a scripted line, sends it, and closes.
mod fake {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{UnixListener, UnixStream};
    use tokio::sync::{mpsc, oneshot};

    pub const SERVICES: &str = include_str!("../../tests/fixtures/docker-1.41/services.json");
    pub const TASKS: &str = include_str!("../../tests/fixtures/docker-1.41/tasks.json");
    pub const NETWORKS: &str = include_str!("../../tests/fixtures/docker-1.41/networks.json");

    #[derive(Clone)]
    pub struct Engine {
        pub tasks: Arc<Mutex<String>>,
        /// The reply to any container inspect.
        pub container: Arc<Mutex<String>>,
        pub scripts: Arc<Mutex<VecDeque<oneshot::Receiver<String>>>>,
        pub event_requests: mpsc::UnboundedSender<String>,
    }

    pub fn serve(listener: UnixListener, engine: Engine) {
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(handle(s, engine.clone()));
            }
        });
    }

    async fn handle(mut s: UnixStream, engine: Engine) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let target = head.split(' ').nth(1).unwrap_or_default().to_string();
        let path = target.split('?').next().unwrap_or_default().to_string();
        let reply = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let out = if path.ends_with("/version") {
            reply(r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#)
        } else if path.ends_with("/services") {
            reply(SERVICES)
        } else if path.ends_with("/tasks") {
            let tasks = engine.tasks.lock().expect("tasks").clone();
            reply(&tasks)
        } else if path.ends_with("/networks") {
            reply(NETWORKS)
        } else if path.contains("/containers/") && path.ends_with("/json") {
            let container = engine.container.lock().expect("container").clone();
            reply(&container)
        } else if path.ends_with("/events") {
            let _ = engine.event_requests.send(target.clone());
            let script = engine.scripts.lock().expect("scripts").pop_front();
            let header =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            if s.write_all(header.as_bytes()).await.is_err() {
                return;
            }
            match script {
                Some(line) => match line.await {
                    Ok(line) => format!("{line}\n"),
                    Err(_) => return,
                },
                None => std::future::pending().await,
            }
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        };
        let _ = s.write_all(out.as_bytes()).await;
        let _ = s.shutdown().await;
    }
}

async fn next_request(r: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), r.recv())
        .await
        .expect("an events request")
        .expect("open")
}

#[tokio::test]
async fn with_a_manager_cluster_events_come_from_it_container_events_from_the_node_and_either_ending_reopens_both(
) {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::sync::{mpsc, oneshot};

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = |name: &str, scripts: VecDeque<oneshot::Receiver<String>>| {
        let sock = dir.path().join(name);
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let (req_tx, requests) = mpsc::unbounded_channel();
        fake::serve(
            listener,
            fake::Engine {
                tasks: Arc::new(Mutex::new(fake::TASKS.to_string())),
                container: Arc::default(),
                scripts: Arc::new(Mutex::new(scripts)),
                event_requests: req_tx,
            },
        );
        (format!("unix://{}", sock.display()), requests)
    };
    // The manager's stream stays open; the node's sends one line and closes.
    let (manager, mut manager_requests) = engine("manager.sock", VecDeque::new());
    let (release, script) = oneshot::channel::<String>();
    let (node, mut node_requests) = engine("node.sock", VecDeque::from([script]));
    let docker = Docker::connect_split(Some(&manager), Some(&node))
        .await
        .expect("connect to both fakes");
    assert_eq!(docker.endpoint(), manager);
    assert_eq!(docker.local_endpoint(), Some(node.clone()));
    let options = WatchOptions {
        backoff_initial: Duration::from_millis(10),
        ..WatchOptions::default()
    };
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let run = tokio::spawn(Watcher::new(docker, options).run(tx));
    let within = Duration::from_secs(10);
    let m1 = next_request(&mut manager_requests).await;
    let n1 = next_request(&mut node_requests).await;
    // Filters are URL-encoded JSON: the type names appear as they are.
    assert!(m1.contains("service") && !m1.contains("container"), "{m1}");
    assert!(n1.contains("container") && !n1.contains("service"), "{n1}");

    let event = r#"{"Type":"container","Action":"start","Actor":{"ID":"c1","Attributes":{}},"scope":"local","time":1795729106,"timeNano":1795729106712866649}"#;
    release.send(event.to_string()).expect("fake waiting");
    // The node's stream ended: both are opened again.
    next_request(&mut manager_requests).await;
    next_request(&mut node_requests).await;

    drop(rx);
    tokio::time::timeout(within, run)
        .await
        .expect("stops without receivers")
        .expect("no panic");
}
