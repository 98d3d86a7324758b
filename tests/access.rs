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
                // Health checks connect and close without a request.
                let Some(raw) = support::read_head(&mut stream).await else {
                    return;
                };
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
    let (status, head, body) = exchange(source, port, host, preamble, headers).await?;
    Some((status, body, header(&head, "location").unwrap_or_default()))
}

/// The value of the first `name` header of a response head (case-insensitive).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// [`get_from`]'s exchange: `Some((status, head, body))`.
async fn exchange(
    source: IpAddr,
    port: u16,
    host: &str,
    preamble: &[u8],
    headers: &str,
) -> Option<(u16, String, String)> {
    let exchange = async {
        // An IPv6 source connects to the IPv6 loopback, where a test binds HAProxy too.
        let (socket, to) = match source {
            IpAddr::V4(_) => (TcpSocket::new_v4()?, IpAddr::V4(Ipv4Addr::LOCALHOST)),
            IpAddr::V6(_) => (
                TcpSocket::new_v6()?,
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ),
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let mut stream: TcpStream = socket.connect(SocketAddr::new(to, port)).await?;
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
    Some((status, head.to_owned(), body.to_owned()))
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
                matches!(refused, None | Some((400, _, _))),
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

/// Labels through the driver (`Reconciler::pass` on a snapshot, as `run` does) into a real
/// HAProxy: what an edit costs is `show proc`'s reload counter.
mod driver {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use support::{reloads, Backend};

    use swarm_lb::model::access::TrustedProxy;
    use swarm_lb::model::{DesiredTaskState, Service, Snapshot, Task, TaskAddress, TaskState};

    use swarm_lb::reconcile::Reconciler;

    const NET: &str = "net-1";

    /// Service `web` on `a.example`, one task at 127.0.0.`task`:`port`, with `labels`.
    fn snapshot(port: u16, task: u8, labels: &[(&str, &str)]) -> Snapshot {
        let mut all: BTreeMap<String, String> = BTreeMap::new();
        all.insert("com.docker.lb.hosts".into(), "a.example".into());
        all.insert("com.docker.lb.port".into(), port.to_string());
        for (k, v) in labels {
            all.insert((*k).to_owned(), (*v).to_owned());
        }
        Snapshot {
            services: swarm_lb::model::shared(vec![Service {
                id: "id-web".into(),
                name: "web".into(),
                labels: all,
                networks: vec![NET.to_owned()],
                vips: vec![],
            }]),
            tasks: swarm_lb::model::shared(vec![Task {
                id: "task-web-1".into(),
                service_id: "id-web".into(),
                slot: Some(1),
                state: TaskState::Running,
                desired_state: DesiredTaskState::Running,
                addresses: vec![TaskAddress {
                    network: NET.to_owned(),
                    addr: loopback(task),
                }],
            }]),
            networks: vec![support::front_network(NET)],
        }
    }

    fn reconciler(haproxy: &Haproxy) -> Reconciler {
        support::driver(haproxy, 4, true)
    }

    /// The status each of 127.0.0.1, .2 and .3 gets for `a.example`.
    async fn statuses(port: u16) -> Vec<u16> {
        let mut out = Vec::new();
        for source in [1, 2, 3] {
            let got = get_from(loopback(source), port, "a.example", b"", "").await;
            out.push(got.map_or(0, |(status, _, _)| status));
        }
        out
    }

    /// One pass of `driver` over `web` with `labels` (its task at 127.0.0.9:`port`).
    async fn apply(driver: &mut Reconciler, port: u16, labels: &[(&str, &str)]) {
        driver.pass(&snapshot(port, 9, labels)).await.expect("pass");
    }

    // Multi-threaded: the stand-in task answers while the test waits on HAProxy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ip_allow_and_ip_deny_edits_change_who_is_let_in_with_no_reload_and_a_bad_list_keeps_the_last_good_one(
    ) {
        let port = support::free_port();
        let _task = Backend::start_at("web-1", SocketAddr::new(loopback(9), port)).await;
        let haproxy = Haproxy::start(&ProxyState::default()).await;
        let http = haproxy.http_port;
        let mut driver = reconciler(&haproxy);
        let master = haproxy.master();

        // Creating the service (its one reload before 3.4) with its lists.
        apply(
            &mut driver,
            port,
            &[
                ("com.docker.lb.ip_allow", "127.0.0.2, 127.0.0.3"),
                ("com.docker.lb.ip_deny", "127.0.0.3"),
            ],
        )
        .await;
        let after_create = reloads(&master).await;
        // Outside the allow list, inside it, inside it but denied (deny wins).
        assert_eq!(statuses(http).await, [403, 200, 403]);

        // Edits: a wider allow list, the deny list dropped; then a deny list alone.
        apply(
            &mut driver,
            port,
            &[("com.docker.lb.ip_allow", "127.0.0.0/8")],
        )
        .await;
        assert_eq!(statuses(http).await, [200, 200, 200]);
        apply(
            &mut driver,
            port,
            &[("com.docker.lb.ip_deny", "127.0.0.0/31, 127.0.0.3")],
        )
        .await;
        assert_eq!(statuses(http).await, [403, 200, 403]);

        // A broken list keeps the last good policy: never "allow all".
        apply(
            &mut driver,
            port,
            &[("com.docker.lb.ip_allow", "127.0.0.2")],
        )
        .await;
        assert_eq!(statuses(http).await, [403, 200, 403]);
        for broken in [
            &[("com.docker.lb.ip_allow", "127.0.0.0/33")][..],
            &[("com.docker.lb.ip_allow", "everyone")][..],
            &[
                ("com.docker.lb.ip_allow", "127.0.0.2"),
                ("com.docker.lb.ip_deny", ""),
            ][..],
        ] {
            apply(&mut driver, port, broken).await;
            assert_eq!(statuses(http).await, [403, 200, 403], "{broken:?}");
        }

        // Labels removed: everyone again.
        apply(&mut driver, port, &[]).await;
        assert_eq!(statuses(http).await, [200, 200, 200]);
        assert_eq!(
            reloads(&master).await,
            after_create,
            "no edit of an access list reloads"
        );

        // The files hold the policy too: a reload (or restart) keeps it.
        apply(
            &mut driver,
            port,
            &[("com.docker.lb.ip_allow", "127.0.0.2")],
        )
        .await;
        driver.flush().await.expect("files");
        let map = std::fs::read_to_string(haproxy.map_path()).expect("map");
        assert!(map.contains("&web =closed\n"), "{map}");
        assert!(map.contains("&web@4:7F000002 =allow\n"), "{map}");
    }

    /// `n` requests from 127.0.0.`source` at once (one after the other): the count of each
    /// status, and the Retry-After values of the 429s.
    async fn burst(port: u16, source: u8, n: usize) -> (BTreeMap<u16, usize>, BTreeSet<String>) {
        let mut statuses = BTreeMap::new();
        let mut retry = BTreeSet::new();
        for _ in 0..n {
            let (status, head, _) = exchange(loopback(source), port, "a.example", b"", "")
                .await
                .expect("an answer");
            *statuses.entry(status).or_insert(0) += 1;
            if status == 429 {
                retry.insert(header(&head, "retry-after").unwrap_or_default());
            }
        }
        (statuses, retry)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_limit_answers_429_with_retry_after_per_client_and_edits_apply_with_no_reload() {
        let port = support::free_port();
        let _task = Backend::start_at("web-1", SocketAddr::new(loopback(9), port)).await;
        let haproxy = Haproxy::start(&ProxyState::default()).await;
        let http = haproxy.http_port;
        let mut driver = reconciler(&haproxy);
        let master = haproxy.master();
        let counts = |ok: usize, refused: usize| {
            BTreeMap::from([(200, ok), (429, refused)])
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect::<BTreeMap<u16, usize>>()
        };

        apply(&mut driver, port, &[("com.docker.lb.rate_limit", "5/s")]).await;
        let after_create = reloads(&master).await;
        // Per client address: two clients get five each within the second.
        let (got, retry) = burst(http, 2, 8).await;
        assert_eq!(got, counts(5, 3));
        assert_eq!(retry, BTreeSet::from(["1".to_owned()]));
        assert_eq!(burst(http, 3, 5).await.0, counts(5, 0));

        // Sustained: a client asking as fast as it can for 4 s is let in about 5 times a
        // second (HAProxy's rate is a sliding estimate: within 10 %).
        let start = std::time::Instant::now();
        let mut allowed = 0usize;
        while start.elapsed() < Duration::from_secs(4) {
            let got = exchange(loopback(4), http, "a.example", b"", "").await;
            if matches!(got, Some((200, _, _))) {
                allowed += 1;
            }
        }
        let per_second = allowed as f64 / start.elapsed().as_secs_f64();
        eprintln!("sustained: {allowed} let in over 4 s: {per_second:.2}/s for 5/s");
        assert!((per_second - 5.0).abs() <= 0.5, "{per_second:.2}/s for 5/s");

        // Per minute, with Retry-After 60; a burst on a per-second limit.
        apply(&mut driver, port, &[("com.docker.lb.rate_limit", "3/m")]).await;
        let (got, retry) = burst(http, 5, 5).await;
        assert_eq!(got, counts(3, 2));
        assert_eq!(retry, BTreeSet::from(["60".to_owned()]));
        apply(
            &mut driver,
            port,
            &[
                ("com.docker.lb.rate_limit", "2/s"),
                ("com.docker.lb.rate_limit_burst", "3"),
            ],
        )
        .await;
        assert_eq!(burst(http, 6, 7).await.0, counts(5, 2));

        // A broken rate keeps the last good limit (2/s + 3): never lifted.
        apply(&mut driver, port, &[("com.docker.lb.rate_limit", "0/s")]).await;
        assert_eq!(burst(http, 7, 7).await.0, counts(5, 2));
        // Removed: no limit.
        apply(&mut driver, port, &[]).await;
        assert_eq!(burst(http, 8, 20).await.0, counts(20, 0));
        assert_eq!(
            reloads(&master).await,
            after_create,
            "no rate limit edit reloads"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_allow_list_and_the_log_see_the_client_a_trusted_balancer_names_and_no_other() {
        let port = support::free_port();
        let _task = Backend::start_at("web-1", SocketAddr::new(loopback(9), port)).await;
        let trusted = ["127.0.0.2", "proxy:127.0.0.4"]
            .iter()
            .map(|s| s.parse::<TrustedProxy>().expect("trusted proxy"))
            .collect();
        let haproxy = Haproxy::start_https_behind(&ProxyState::default(), trusted).await;
        let http = haproxy.http_port;
        let mut driver = reconciler(&haproxy);
        apply(
            &mut driver,
            port,
            &[("com.docker.lb.ip_allow", "198.51.100.0/24")],
        )
        .await;
        let status = |source: u8, preamble: Vec<u8>, headers: &'static str| async move {
            get_from(loopback(source), http, "a.example", &preamble, headers)
                .await
                .map_or(0, |(status, _, _)| status)
        };
        let xff = |ip: &'static str| -> &'static str {
            match ip {
                "198.51.100.1" => "x-forwarded-for: 198.51.100.1\r\n",
                _ => "x-forwarded-for: 203.0.113.1\r\n",
            }
        };
        // The trusted HTTP balancer: its forwarded address decides.
        assert_eq!(status(2, vec![], xff("198.51.100.1")).await, 200);
        assert_eq!(status(2, vec![], xff("203.0.113.1")).await, 403);
        // Anyone else naming an allowed address is still itself.
        assert_eq!(status(3, vec![], xff("198.51.100.1")).await, 403);
        // The PROXY sender: the header's address decides.
        let allowed = proxy_v2(Ipv4Addr::new(198, 51, 100, 9), http);
        let refused = proxy_v2(Ipv4Addr::new(203, 0, 113, 9), http);
        assert_eq!(status(4, allowed, "").await, 200);
        assert_eq!(status(4, refused, "").await, 403);
        // HAProxy's own log names the client, not the balancer (a line is written as the
        // stream ends, which may be just after the answer).
        for client in ["198.51.100.1:", "198.51.100.9:", "203.0.113.9:"] {
            let what = format!("a log line from {client}");
            support::poll_until(support::STARTUP, &what, || async {
                haproxy
                    .log()
                    .lines()
                    .any(|l| l.starts_with(client))
                    .then_some(())
            })
            .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ipv6_clients_are_matched_by_ipv6_blocks_and_never_by_ipv4_ones() {
        let port = support::free_port();
        let _task = Backend::start_at("web-1", SocketAddr::new(loopback(9), port)).await;
        // HAProxy on [::1] too, same port as its IPv4 bind.
        let haproxy = Haproxy::start_tweaked(&ProxyState::default(), false, |s| {
            let v6 = s.binds[0].replacen("127.0.0.1", "[::1]", 1);
            s.binds.push(v6);
        })
        .await;
        let http = haproxy.http_port;
        let mut driver = reconciler(&haproxy);
        let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        let status = |source: IpAddr| async move {
            get_from(source, http, "a.example", b"", "")
                .await
                .map_or(0, |(status, _, _)| status)
        };

        apply(
            &mut driver,
            port,
            &[("com.docker.lb.ip_allow", "::1, 127.0.0.2")],
        )
        .await;
        assert_eq!(
            (
                status(v6).await,
                status(loopback(2)).await,
                status(loopback(3)).await
            ),
            (200, 200, 403)
        );
        apply(
            &mut driver,
            port,
            &[("com.docker.lb.ip_allow", "2001:db8::/32, 0.0.0.0/0")],
        )
        .await;
        assert_eq!((status(v6).await, status(loopback(3)).await), (403, 200));
        apply(&mut driver, port, &[("com.docker.lb.ip_deny", "::/0")]).await;
        assert_eq!((status(v6).await, status(loopback(3)).await), (403, 200));
        apply(&mut driver, port, &[("com.docker.lb.ip_deny", "::2/127")]).await;
        assert_eq!((status(v6).await, status(loopback(3)).await), (200, 200));
    }
}

/// What `auth_basic` stands on (the driver's tests are in `basic_auth` below): the files Debian's `htpasswd` writes
/// are read by `model::htpasswd`, and the users it accepts authenticate on HAProxy through a
/// `userlist` built from its entries, with the realm taken from a variable.
#[tokio::test]
async fn htpasswd_files_are_read_and_their_bcrypt_and_sha512_users_authenticate_on_haproxy() {
    use swarm_lb::model::htpasswd::{self, Scheme};
    use swarm_lb_testkit::{HaproxyProcess, Launch, Listener};

    swarm_lb_testkit::tls::require_tools(&["htpasswd", "curl"], "the basic-auth tests");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("users");
    let htpasswd = |flags: &str, user: &str, password: &str| {
        let status = Process::new("htpasswd")
            .arg(flags)
            .arg(&file)
            .args([user, password])
            .stderr(Stdio::null())
            .status()
            .expect("run htpasswd");
        assert!(status.success(), "htpasswd {flags} {user}");
    };
    htpasswd("-bcB", "alice", "pw-alice");
    htpasswd("-b5", "bob", "pw-bob");
    let text = std::fs::read_to_string(&file).expect("read the file");
    let entries = htpasswd::parse(&text).expect("htpasswd's bcrypt and sha-512 lines");
    let schemes: Vec<Scheme> = entries.iter().map(|e| e.scheme).collect();
    assert_eq!(schemes, [Scheme::Bcrypt, Scheme::Sha512Crypt]);
    // htpasswd's default (MD5) is refused by name.
    htpasswd("-bm", "carol", "pw-carol");
    let err = htpasswd::parse(&std::fs::read_to_string(&file).expect("read")).unwrap_err();
    assert!(err.to_string().contains("carol"), "{err}");

    let port = support::free_port();
    let launch = Launch::in_dir(dir.path());
    let mut config = format!(
        "global\n    stats socket {} level admin\n\ndefaults\n    mode http\n    timeout client 5s\n    \
         timeout connect 5s\n    timeout server 5s\n\nuserlist users\n",
        launch.admin_socket.display()
    );
    for e in &entries {
        config.push_str(&format!("    user {} password {}\n", e.user, e.hash()));
    }
    config.push_str(&format!(
        "\nfrontend f\n    bind 127.0.0.1:{port}\n    http-request set-var(txn.realm) str(staff)\n    \
         http-request return status 401 hdr WWW-Authenticate \"Basic realm=\\\"%[var(txn.realm)]\\\"\" \
         unless {{ http_auth(users) }}\n    http-request return status 200 content-type text/plain \
         lf-string \"%[http_auth_user]\"\n"
    ));
    std::fs::write(&launch.config, config).expect("write config");
    let mut process = HaproxyProcess::start(launch, support::STARTUP)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    process
        .wait_accepting(
            support::STARTUP,
            &Listener::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let curl = move |user: Option<&str>| {
        let mut cmd = Process::new("curl");
        cmd.args(["-s", "-i", "--max-time", "5"]);
        if let Some(user) = user {
            cmd.args(["-u", user]);
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = |reply: &str| reply.split(' ').nth(1).unwrap_or("").to_owned();
    let anonymous = tokio::task::spawn_blocking(move || curl(None))
        .await
        .expect("curl");
    assert_eq!(status(&anonymous), "401", "{anonymous}");
    assert_eq!(
        header(&anonymous.replace("\r\n", "\n"), "www-authenticate").as_deref(),
        Some("Basic realm=\"staff\"")
    );
    for (user, want) in [
        ("alice:pw-alice", "200"),
        ("bob:pw-bob", "200"),
        ("alice:wrong", "401"),
    ] {
        let reply = tokio::task::spawn_blocking(move || curl(Some(user)))
            .await
            .expect("curl");
        assert_eq!(status(&reply), want, "{user}: {reply}");
    }
    drop(process);
}

/// `com.docker.lb.auth_basic` / `auth_realm` through the driver into a real HAProxy, with
/// htpasswd files made by Debian's tools, read from a secrets directory as the copy job
/// leaves them. What an edit costs is `show proc`'s reload counter.
mod basic_auth {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use support::{reloads, Backend};

    use swarm_lb::model::{DesiredTaskState, Service, Snapshot, Task, TaskAddress, TaskState};
    use swarm_lb::reconcile::auth::AuthLists;
    use swarm_lb::reconcile::Reconciler;

    const NET: &str = "net-1";

    /// Service `web` on `a.example`, its task at 127.0.0.9:`port`, with `labels`.
    fn snapshot(port: u16, labels: &[(&str, &str)]) -> Snapshot {
        let mut all: BTreeMap<String, String> = BTreeMap::new();
        all.insert("com.docker.lb.hosts".into(), "a.example".into());
        all.insert("com.docker.lb.port".into(), port.to_string());
        for (k, v) in labels {
            all.insert((*k).to_owned(), (*v).to_owned());
        }
        Snapshot {
            services: swarm_lb::model::shared(vec![Service {
                id: "id-web".into(),
                name: "web".into(),
                labels: all,
                networks: vec![NET.to_owned()],
                vips: vec![],
            }]),
            tasks: swarm_lb::model::shared(vec![Task {
                id: "task-web-1".into(),
                service_id: "id-web".into(),
                slot: Some(1),
                state: TaskState::Running,
                desired_state: DesiredTaskState::Running,
                addresses: vec![TaskAddress {
                    network: NET.to_owned(),
                    addr: loopback(9),
                }],
            }]),
            networks: vec![support::front_network(NET)],
        }
    }

    /// RFC 4648 base64 (with padding), for `Authorization: Basic` (RFC 7617 2).
    fn base64(bytes: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// (status, the `WWW-Authenticate` header) for `a.example` as `user:password`, or with
    /// no credentials.
    async fn ask(port: u16, credentials: Option<&str>) -> (u16, String) {
        let headers = credentials
            .map(|c| format!("authorization: Basic {}\r\n", base64(c.as_bytes())))
            .unwrap_or_default();
        let (status, head, _) = exchange(loopback(1), port, "a.example", b"", &headers)
            .await
            .expect("an answer");
        (
            status,
            header(&head, "www-authenticate").unwrap_or_default(),
        )
    }

    /// The status of each of `credentials`.
    async fn statuses(port: u16, credentials: &[Option<&str>]) -> Vec<u16> {
        let mut out = Vec::new();
        for c in credentials {
            out.push(ask(port, *c).await.0);
        }
        out
    }

    /// Runs a Debian tool that writes htpasswd lines, failing (never skipping) with how to
    /// install it when it is missing.
    fn tool(program: &str, args: &[&str]) -> String {
        let package = match program {
            "htpasswd" => "apache2-utils",
            other => other,
        };
        let found = Process::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{program} is needed by the basic-auth tests: apt-get install {package}"
        );
        let out = Process::new(program)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(out.status.success(), "{program} {args:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// An htpasswd file `name` in `dir` with `lines`.
    fn secret(dir: &Path, name: &str, lines: &[String]) {
        std::fs::write(dir.join(name), lines.concat()).expect("write the secret");
    }

    /// `user:<bcrypt hash>` by `htpasswd -nbB` (cost 5: HAProxy checks it on every request).
    fn bcrypt(user: &str, password: &str) -> String {
        tool("htpasswd", &["-nbB", "-C", "5", user, password])
            .trim_end()
            .to_owned()
            + "\n"
    }

    /// `user:<sha-512-crypt hash>` by `openssl passwd -6`.
    fn sha512(user: &str, password: &str) -> String {
        format!("{user}:{}", tool("openssl", &["passwd", "-6", password]))
    }

    fn driver(haproxy: &Haproxy, secrets: &Path) -> Reconciler {
        support::driver(haproxy, 4, true).with_auth(AuthLists::new(secrets))
    }

    async fn apply(driver: &mut Reconciler, port: u16, labels: &[(&str, &str)]) {
        driver.pass(&snapshot(port, labels)).await.expect("pass");
    }

    const AUTH: &str = "com.docker.lb.auth_basic";
    const REALM: &str = "com.docker.lb.auth_realm";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_users_of_the_secret_get_in_others_get_401_with_the_realm_and_a_new_secret_costs_one_reload(
    ) {
        let secrets = tempfile::tempdir().expect("temp dir");
        let dir = secrets.path();
        secret(
            dir,
            "users-v1",
            &[bcrypt("alice", "pw-alice"), sha512("bob", "pw-bob"), {
                // `htpasswd -5` writes sha-512-crypt too.
                tool("htpasswd", &["-nb5", "carol", "pw-carol"])
                    .trim_end()
                    .to_owned()
                    + "\n"
            }],
        );
        // The next file keeps alice (hashed again) and brings dave; bob and carol go.
        secret(
            dir,
            "users-v2",
            &[bcrypt("alice", "pw-alice"), bcrypt("dave", "pw-dave")],
        );
        let port = support::free_port();
        let _task = Backend::start_at("web-1", SocketAddr::new(loopback(9), port)).await;
        let haproxy = Haproxy::start(&ProxyState::default()).await;
        let http = haproxy.http_port;
        let master = haproxy.master();
        let mut driver = driver(&haproxy, dir);

        let before = reloads(&master).await;
        apply(
            &mut driver,
            port,
            &[(AUTH, "users-v1"), (REALM, "Staff area")],
        )
        .await;
        let after_create = reloads(&master).await;
        // The service and its first list: one reload on every version (before 3.4 the
        // backend's; on 3.4 the list's, the backend being created at runtime).
        assert_eq!(
            after_create - before,
            1,
            "creating the service with its list"
        );
        assert_eq!(
            ask(http, None).await,
            (401, "Basic realm=\"Staff area\"".to_owned())
        );
        assert_eq!(
            statuses(
                http,
                &[
                    Some("alice:pw-alice"),
                    Some("bob:pw-bob"),
                    Some("carol:pw-carol"),
                    Some("alice:pw-bob"),
                    Some("mallory:pw-alice"),
                ]
            )
            .await,
            [200, 200, 200, 401, 401]
        );
        assert_eq!(
            ask(http, Some("alice:wrong")).await.1,
            "Basic realm=\"Staff area\""
        );

        // A realm edit is a map edit.
        apply(
            &mut driver,
            port,
            &[(AUTH, "users-v1"), (REALM, "Ops: v2 'beta'")],
        )
        .await;
        assert_eq!(
            ask(http, None).await,
            (401, "Basic realm=\"Ops: v2 'beta'\"".to_owned())
        );
        assert_eq!(reloads(&master).await, after_create, "a realm edit reloads");

        // Rotation: the label names a new secret; one reload, then only its users. A user
        // of both files asking all along is never refused: the new list is loaded before
        // the map entry names it.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asking = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut got: BTreeMap<u16, usize> = BTreeMap::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    *got.entry(ask(http, Some("alice:pw-alice")).await.0)
                        .or_default() += 1;
                }
                got
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        apply(&mut driver, port, &[(AUTH, "users-v2")]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let got = asking.await.expect("the asking task");
        eprintln!("alice during the rotation: {got:?}");
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), [200], "{got:?}");
        assert_eq!(reloads(&master).await, after_create + 1, "rotation");
        assert_eq!(
            statuses(
                http,
                &[
                    Some("dave:pw-dave"),
                    Some("alice:pw-alice"),
                    Some("bob:pw-bob"),
                    None
                ]
            )
            .await,
            [200, 200, 401, 401]
        );
        assert_eq!(
            ask(http, None).await.1,
            "Basic realm=\"web\"",
            "default realm"
        );

        // Bad input keeps the last good list (never open): a scheme HAProxy cannot check,
        // a file that is not an htpasswd file, an empty one, a secret that is not there.
        secret(
            dir,
            "users-md5",
            &[tool("htpasswd", &["-nbm", "eve", "pw-eve"])
                .trim_end()
                .to_owned()
                + "\n"],
        );
        secret(
            dir,
            "not-htpasswd",
            &["-----BEGIN CERTIFICATE-----\n".to_owned()],
        );
        secret(dir, "empty", &[]);
        for bad in ["users-md5", "not-htpasswd", "empty", "missing"] {
            apply(&mut driver, port, &[(AUTH, bad)]).await;
            assert_eq!(
                statuses(
                    http,
                    &[
                        Some("dave:pw-dave"),
                        Some("eve:pw-eve"),
                        Some("bob:pw-bob"),
                        None
                    ]
                )
                .await,
                [200, 401, 401, 401],
                "{bad}"
            );
        }
        assert_eq!(
            reloads(&master).await,
            after_create + 1,
            "a refused secret reloads"
        );

        // Back to the first list, which the running worker still holds: no reload.
        apply(&mut driver, port, &[(AUTH, "users-v1")]).await;
        assert_eq!(
            statuses(http, &[Some("bob:pw-bob"), Some("dave:pw-dave")]).await,
            [200, 401]
        );
        assert_eq!(
            reloads(&master).await,
            after_create + 1,
            "a loaded list reloads"
        );

        // The files hold the lists (owner only) and the map entry: a reload keeps them.
        driver.flush().await.expect("files");
        let config = haproxy.config_dir().join("haproxy.cfg");
        let text = std::fs::read_to_string(&config).expect("config");
        assert!(text.contains("userlist auth.users-v1\n    user alice password $2y$05$"));
        assert!(
            !text.contains("userlist auth.users-v2"),
            "a list no service uses stays"
        );
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&config)
                .expect("mode")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the config holds hashes");
        }
        // A restarted driver over the same files serves the same users with no reload,
        // before and after it read the secrets again.
        drop(driver);
        let mut again = self::driver(&haproxy, dir);
        apply(&mut again, port, &[(AUTH, "users-v1")]).await;
        assert_eq!(
            statuses(http, &[Some("alice:pw-alice"), None]).await,
            [200, 401]
        );

        // Labels removed: everyone again, no reload.
        apply(&mut again, port, &[]).await;
        assert_eq!(statuses(http, &[None, Some("x:y")]).await, [200, 200]);
        assert_eq!(
            reloads(&master).await,
            after_create + 1,
            "removing the label"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_whose_first_secret_is_refused_lets_nobody_in() {
        let secrets = tempfile::tempdir().expect("temp dir");
        let dir = secrets.path();
        secret(
            dir,
            "plain",
            &[tool("htpasswd", &["-nbp", "alice", "pw-alice"])
                .trim_end()
                .to_owned()
                + "\n"],
        );
        let port = support::free_port();
        let _task = Backend::start_at("web-1", SocketAddr::new(loopback(9), port)).await;
        let haproxy = Haproxy::start(&ProxyState::default()).await;
        let http = haproxy.http_port;
        let mut driver = driver(&haproxy, dir);
        for bad in ["plain", "missing"] {
            apply(&mut driver, port, &[(AUTH, bad), (REALM, "r")]).await;
            assert_eq!(
                statuses(http, &[None, Some("alice:pw-alice")]).await,
                [401, 401],
                "{bad}"
            );
            assert_eq!(ask(http, None).await.1, "Basic realm=\"r\"");
        }
    }
}
