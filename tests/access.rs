//! Who may reach a route (issue 23) against a real HAProxy: clients connect from several
//! loopback source addresses (127.0.0.x, all local on Linux), some opening with a PROXY
//! protocol header (v1 text, v2 binary) built here, and a task that echoes the forwarded
//! headers it got shows what HAProxy passed on.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use support::{route, task_backend, Haproxy};
use swarm_lb::haproxy::ProxyState;
use swarm_lb::model::access::TrustedProxy;
use swarm_lb::model::{Host, MapKey, MapValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

const EXCHANGE: Duration = Duration::from_secs(5);

/// A task that answers 200 with the forwarded headers it got, one `name=values` line each
/// (several header lines joined by `, `, as HTTP reads them).
struct Echo {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                // Health checks connect and close without a request.
                while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&raw);
                let values = |name: &str| {
                    head.lines()
                        .filter_map(|l| l.split_once(':'))
                        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let body = format!(
                    "xff={}\nxfp={}\n",
                    values("x-forwarded-for"),
                    values("x-forwarded-proto")
                );
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    Echo { addr, task }
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// PROXY protocol v1 (text) naming `client` as the source (doc/proxy-protocol.txt, 2.1).
fn proxy_v1(client: Ipv4Addr, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n").into_bytes()
}

/// PROXY protocol v2 (binary): the 12-byte signature, version 2 / command PROXY (0x21),
/// TCP over IPv4 (0x11), 12 bytes of addresses and ports (doc/proxy-protocol.txt, 2.2).
fn proxy_v2(client: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&client.octets());
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&40000u16.to_be_bytes());
    out.extend_from_slice(&port.to_be_bytes());
    out
}

/// One HTTP/1.1 exchange with HAProxy's HTTP port from `source`, `preamble` (a PROXY header)
/// first: `Some((status, body, location))`, or `None` when HAProxy closed without an answer.
async fn get_from(
    source: IpAddr,
    port: u16,
    host: &str,
    preamble: &[u8],
    headers: &str,
) -> Option<(u16, String, String)> {
    let exchange = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let mut stream: TcpStream = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await?;
        let mut request = preamble.to_vec();
        request.extend_from_slice(
            format!("GET /p HTTP/1.1\r\nhost: {host}\r\n{headers}connection: close\r\n\r\n")
                .as_bytes(),
        );
        stream.write_all(&request).await?;
        let mut raw = Vec::new();
        // A reset after HAProxy refused the connection is "no answer" too.
        let _ = stream.read_to_end(&mut raw).await;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(EXCHANGE, exchange)
        .await
        .expect("exchange within the deadline")
        .expect("connect from a loopback address");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let location = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    Some((status, body.to_owned(), location))
}

/// `a.example` (`ssl_only`) and `b.example` routed to `echo`; trusted: 127.0.0.2 (an HTTP balancer) and
/// 127.0.0.4 (a PROXY protocol sender).
async fn behind_balancers(echo: &Echo) -> Haproxy {
    let mut state = ProxyState::default();
    route(
        &mut state,
        "web",
        task_backend(&[echo.addr], 2),
        &["a.example", "b.example"],
    );
    state.hosts.insert(
        MapKey::https_only(&Host::parse("a.example").expect("host")),
        MapValue::https_only(),
    );
    let trusted = ["127.0.0.2", "proxy:127.0.0.4"]
        .iter()
        .map(|s| s.parse::<TrustedProxy>().expect("trusted proxy"))
        .collect();
    Haproxy::start_https_behind(&state, trusted).await
}

#[tokio::test]
async fn a_proxy_header_v1_or_v2_is_believed_from_a_trusted_sender_and_refused_from_others() {
    let echo = echo().await;
    let haproxy = behind_balancers(&echo).await;
    let port = haproxy.http_port;
    let client = Ipv4Addr::new(203, 0, 113, 7);

    for (version, header) in [
        ("v1", proxy_v1(client, port)),
        ("v2", proxy_v2(client, port)),
    ] {
        // The address of the header is the client's, as the task sees it; the client's own
        // forwarded headers are not believed (it is not a trusted balancer).
        let got = get_from(
            loopback(4),
            port,
            "b.example",
            &header,
            "x-forwarded-for: 198.51.100.1\r\nx-forwarded-proto: https\r\n",
        )
        .await;
        assert_eq!(
            got,
            Some((200, "xff=203.0.113.7\nxfp=http\n".to_owned(), String::new())),
            "{version} from the PROXY sender"
        );
        for other in [3, 2] {
            let refused = get_from(loopback(other), port, "b.example", &header, "").await;
            assert!(
                refused.as_ref().is_none_or(|(status, _, _)| *status == 400),
                "{version} from 127.0.0.{other}, not a PROXY sender: {refused:?}"
            );
        }
    }
    // From the PROXY sender, a connection without the header is refused: it is required.
    assert_eq!(
        get_from(loopback(4), port, "b.example", b"", "").await,
        None
    );
}

// curl blocks its thread: the echo task must run on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_kept_from_a_trusted_balancer_and_replaced_from_anyone_else() {
    let echo = echo().await;
    let haproxy = behind_balancers(&echo).await;
    let port = haproxy.http_port;
    let forwarded = "x-forwarded-for: 198.51.100.1\r\nx-forwarded-proto: https\r\n";

    // The trusted balancer took the request over HTTPS: no redirect, its headers kept and its
    // own address appended.
    let (status, body, _) = get_from(loopback(2), port, "a.example", b"", forwarded)
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "xff=198.51.100.1, 127.0.0.2\nxfp=https\n");

    // The same headers from an untrusted client: replaced, and ssl_only redirects.
    let (status, _, location) = get_from(loopback(3), port, "a.example", b"", forwarded)
        .await
        .expect("answer");
    assert_eq!(status, 301);
    assert_eq!(location, "https://a.example/p");

    // Over HTTPS the untrusted client's headers are replaced too (curl: a real TLS client).
    let (https_port, _) = haproxy.https.as_ref().expect("HTTPS on");
    swarm_lb_testkit::tls::require_tools(&["curl"], "the access tests");
    let curl = |source: &str, proxy: bool| {
        let out = Process::new("curl")
            .args(["-sSk", "--max-time", "5", "--interface", source])
            .args(proxy.then_some("--haproxy-protocol"))
            .args(["-H", "x-forwarded-for: 198.51.100.1"])
            .args(["-H", "x-forwarded-proto: http"])
            .arg("--resolve")
            .arg(format!("a.example:{https_port}:127.0.0.1"))
            .arg(format!("https://a.example:{https_port}/p"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("127.0.0.3", false), "xff=127.0.0.3\nxfp=https\n");
    // The HTTPS bind takes a PROXY header (curl sends v1) from the PROXY sender only, and
    // requires it there.
    assert_eq!(curl("127.0.0.4", true), "xff=127.0.0.4\nxfp=https\n");
    assert_eq!(
        curl("127.0.0.3", true),
        "",
        "PROXY header from an untrusted source"
    );
    assert_eq!(
        curl("127.0.0.4", false),
        "",
        "no PROXY header from the PROXY sender"
    );
    // A trusted balancer's headers are kept over HTTPS as well.
    assert_eq!(
        curl("127.0.0.2", false),
        "xff=198.51.100.1, 127.0.0.2\nxfp=http\n"
    );
}
