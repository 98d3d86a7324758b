//! Forward authentication (`com.docker.lb.auth_forward`, issue 23) against a real HAProxy and
//! its Lua (`haproxy/lua/forward_auth.lua`): an auth service in the test (200 with
//! `X-Auth-User` for a good cookie, 302 to a login page otherwise, a silent one, a broken
//! one, a closed port) and a task that echoes the request it got.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{reloads, route, task_backend, Haproxy, Response};
use swarm_lb::haproxy::ProxyState;
use swarm_lb::model::access::{forward_key, forward_value, ForwardAuth};
use swarm_lb::model::{DesiredTaskState, Service, Snapshot, Task, TaskAddress, TaskState};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A tiny HTTP server on 127.0.0.1 answering each request head with `answer(head)`; the heads
/// it got are kept. Stops on drop.
struct Server {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(answer: fn(&str) -> Option<String>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&heads);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    while let Some(raw) = support::read_head(&mut stream).await {
                        let head = String::from_utf8_lossy(&raw).into_owned();
                        kept.lock().expect("heads").push(head.clone());
                        match answer(&head) {
                            Some(reply) => {
                                if stream.write_all(reply.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            // Silent: hold the connection open, answer nothing.
                            None => tokio::time::sleep(Duration::from_secs(60)).await,
                        }
                    }
                });
            }
        });
        Server { addr, heads, task }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

fn reply(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The value of header `name` in a request or response head.
fn header(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// The auth service: `/slow` never answers, `/garbage` answers no HTTP, `/v2` lets anyone
/// in as bob; otherwise the cookie `session=good` is alice, and anyone else is sent to the
/// login page with two cookies and a body.
fn auth_answer(head: &str) -> Option<String> {
    let path = head.split(' ').nth(1).unwrap_or_default();
    if path.starts_with("/slow") {
        return None;
    }
    if path.starts_with("/garbage") {
        return Some("nonsense\r\n\r\n".to_owned());
    }
    if path.starts_with("/v2") {
        return Some(reply("200 OK", "x-auth-user: bob\r\n", ""));
    }
    if header(head, "cookie")
        .iter()
        .any(|c| c.contains("session=good"))
    {
        return Some(reply(
            "200 OK",
            "x-auth-user: alice\r\nx-auth-groups: admins\r\nx-not-named: secret\r\n",
            "",
        ));
    }
    Some(reply(
        "302 Found",
        "location: http://login.example/?rd=a.example\r\nset-cookie: csrf=1; Path=/\r\nset-cookie: flow=2; HttpOnly\r\n",
        "login please",
    ))
}

/// The task: 200 with the request head it got as the body.
fn echo_answer(head: &str) -> Option<String> {
    Some(reply("200 OK", "", head))
}

fn forward(url: String, headers: &[&str]) -> ForwardAuth {
    ForwardAuth {
        url,
        response_headers: headers.iter().map(|h| (*h).to_owned()).collect(),
    }
}

/// HAProxy with service `web` on `a.example`, its task `task`, asking `url`.
async fn proxy(task: &Server, services: &[(&str, &str, ForwardAuth)]) -> Haproxy {
    let mut state = ProxyState::default();
    for (name, host, forward) in services {
        route(&mut state, name, task_backend(&[task.addr], 2), &[host]);
        state
            .hosts
            .insert(forward_key(name), forward_value(forward));
    }
    Haproxy::start(&state).await
}

async fn get(port: u16, host: &str, target: &str, headers: &str) -> Response {
    support::try_http_get_target(port, host, target, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {target} (host {host}): {e}"))
}

/// `GET /` waiting up to 30 s (the harness's client gives up after 5): (status, head).
async fn slow_get(port: u16, host: &str, headers: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET / HTTP/1.1\r\nhost: {host}\r\n{headers}connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("an answer within 30 s")
        .expect("an answer");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Whether the HAProxy under test is 2.6, whose HTTP client retries a silent server.
fn is_2_6() -> bool {
    let bin = std::env::var("HAPROXY").unwrap_or_else(|_| "haproxy".to_owned());
    let out = std::process::Command::new(bin)
        .arg("-v")
        .output()
        .expect("haproxy -v");
    String::from_utf8_lossy(&out.stdout).contains("version 2.6.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_cookie_reaches_the_task_with_the_auth_services_headers_and_never_the_clients_own() {
    let auth = Server::start(auth_answer).await;
    let task = Server::start(echo_answer).await;
    let url = format!("http://{}/verify?x=1", auth.addr);
    let haproxy = proxy(
        &task,
        &[(
            "web",
            "a.example",
            forward(url, &["X-Auth-User", "X-Auth-Groups"]),
        )],
    )
    .await;
    let got = get(
        haproxy.http_port,
        "a.example",
        "/app/page?q=1",
        "cookie: session=good\r\nauthorization: Bearer t0k3n\r\nx-auth-user: mallory\r\nx-auth-groups: root\r\n\
         x_auth_user: mallory\r\naccept: text/html\r\nuser-agent: browser/1\r\nx-requested-with: XMLHttpRequest\r\n",
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    // The underscore spelling (CGI, WSGI and PHP read it as the same header) is removed too.
    assert!(header(&got.body, "x_auth_user").is_empty(), "{}", got.body);
    // The task got the auth service's values, not the client's, nor an unnamed header.
    assert_eq!(header(&got.body, "x-auth-user"), ["alice"], "{}", got.body);
    assert_eq!(
        header(&got.body, "x-auth-groups"),
        ["admins"],
        "{}",
        got.body
    );
    assert!(header(&got.body, "x-not-named").is_empty(), "{}", got.body);
    assert_eq!(header(&got.body, "cookie"), ["session=good"]);
    // What the auth service was asked: a GET with the original request described.
    let asked = auth.heads();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let ask = &asked[0];
    assert!(ask.starts_with("GET /verify?x=1 HTTP/1.1\r\n"), "{ask}");
    assert_eq!(header(ask, "x-forwarded-method"), ["GET"], "{ask}");
    assert_eq!(header(ask, "x-forwarded-proto"), ["http"], "{ask}");
    assert_eq!(header(ask, "x-forwarded-host"), ["a.example"], "{ask}");
    assert_eq!(header(ask, "x-forwarded-uri"), ["/app/page?q=1"], "{ask}");
    assert_eq!(header(ask, "x-forwarded-for"), ["127.0.0.1"], "{ask}");
    assert_eq!(header(ask, "cookie"), ["session=good"], "{ask}");
    assert_eq!(header(ask, "authorization"), ["Bearer t0k3n"], "{ask}");
    // The client's other headers too, as Traefik's forwardAuth sends them: Authelia answers a
    // browser (`Accept: text/html`) with its portal's redirect, an API client with 401.
    assert_eq!(header(ask, "accept"), ["text/html"], "{ask}");
    assert_eq!(header(ask, "user-agent"), ["browser/1"], "{ask}");
    assert_eq!(header(ask, "x-requested-with"), ["XMLHttpRequest"], "{ask}");
    // The Host is the auth service's own (the client's is in X-Forwarded-Host).
    assert!(
        !header(ask, "host").iter().any(|h| h == "a.example"),
        "{ask}"
    );
    // The client's forged copies never reach the auth service either.
    assert!(header(ask, "x-auth-user").is_empty(), "{ask}");
    assert!(header(ask, "x_auth_user").is_empty(), "{ask}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_good_cookie_the_client_gets_the_auth_services_redirect_as_it_is_and_the_task_nothing(
) {
    let auth = Server::start(auth_answer).await;
    let task = Server::start(echo_answer).await;
    let url = format!("http://{}/verify", auth.addr);
    let haproxy = proxy(
        &task,
        &[("web", "a.example", forward(url, &["X-Auth-User"]))],
    )
    .await;
    let got = get(
        haproxy.http_port,
        "a.example",
        "/",
        "x-auth-user: mallory\r\ncookie: session=bad\r\n",
    )
    .await;
    assert_eq!(got.status, 302, "{got:?}");
    assert_eq!(
        header(&got.head, "location"),
        ["http://login.example/?rd=a.example"]
    );
    let mut cookies = header(&got.head, "set-cookie");
    cookies.sort();
    assert_eq!(cookies, ["csrf=1; Path=/", "flow=2; HttpOnly"]);
    assert_eq!(got.body, "login please");
    assert!(
        task.heads().is_empty(),
        "the task was reached: {:?}",
        task.heads()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_service_down_silent_or_broken_closes_the_route_with_503_within_the_bound() {
    let auth = Server::start(auth_answer).await;
    let task = Server::start(echo_answer).await;
    // A closed port: bound, then let go.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let down = closed.local_addr().expect("addr");
    drop(closed);
    let haproxy = proxy(
        &task,
        &[
            (
                "down",
                "down.example",
                forward(format!("http://{down}/verify"), &["X-Auth-User"]),
            ),
            (
                "slow",
                "slow.example",
                forward(format!("http://{}/slow", auth.addr), &["X-Auth-User"]),
            ),
            (
                "junk",
                "junk.example",
                forward(format!("http://{}/garbage", auth.addr), &[]),
            ),
        ],
    )
    .await;
    let cookie = "cookie: session=good\r\n";
    for host in ["down.example", "junk.example"] {
        let got = get(haproxy.http_port, host, "/", cookie).await;
        assert_eq!(got.status, 503, "{host}: {got:?}");
        assert!(
            got.body.contains("authentication service"),
            "{host}: {got:?}"
        );
    }
    // Silent: each attempt waits 5 s; 2.6's HTTP client tries four times.
    let bound = if is_2_6() { 21.0 } else { 6.0 };
    let started = Instant::now();
    let (status, head) = slow_get(haproxy.http_port, "slow.example", cookie).await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(status, 503, "after {took:.1} s: {head}");
    assert!((4.5..bound).contains(&took), "answered after {took:.1} s");
    assert!(
        task.heads().is_empty(),
        "the task was reached: {:?}",
        task.heads()
    );
}

/// Labels through the driver: what an edit costs is `show proc`'s reload counter.
mod driver {
    use super::*;
    use swarm_lb::reconcile::Reconciler;

    const NET: &str = "net-1";

    fn snapshot(task: SocketAddr, labels: &[(&str, &str)]) -> Snapshot {
        let mut all: BTreeMap<String, String> = BTreeMap::new();
        all.insert("com.docker.lb.hosts".into(), "a.example".into());
        all.insert("com.docker.lb.port".into(), task.port().to_string());
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
                    addr: task.ip(),
                }],
            }]),
            networks: vec![support::front_network(NET)],
        }
    }

    async fn apply(driver: &mut Reconciler, task: SocketAddr, labels: &[(&str, &str)]) {
        driver.pass(&snapshot(task, labels)).await.expect("pass");
    }

    /// The errors `labels` give on `web` (the pure model the driver runs).
    fn errors(task: SocketAddr, labels: &[(&str, &str)]) -> Vec<String> {
        let desired = swarm_lb::model::desired(
            &snapshot(task, labels),
            &swarm_lb::model::Settings::default(),
            &BTreeMap::new(),
        );
        desired.errors.iter().map(ToString::to_string).collect()
    }

    const URL: &str = "com.docker.lb.auth_forward";
    const HEADERS: &str = "com.docker.lb.auth_forward_response_headers";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adding_editing_and_removing_the_label_costs_no_reload_and_a_bad_value_keeps_the_last_good_one(
    ) {
        let auth = Server::start(auth_answer).await;
        let task = Server::start(echo_answer).await;
        let haproxy = Haproxy::start(&ProxyState::default()).await;
        let master = haproxy.master();
        let mut driver = support::driver(&haproxy, 4, true);
        let port = haproxy.http_port;
        let forged = "x-auth-user: mallory\r\n";
        apply(&mut driver, task.addr, &[]).await;
        let after_create = reloads(&master).await;
        let open = get(port, "a.example", "/", forged).await;
        assert_eq!(
            header(&open.body, "x-auth-user"),
            ["mallory"],
            "no auth yet"
        );

        // Added: a redirect for the forger, alice for the good cookie.
        let v1 = format!("http://{}/verify", auth.addr);
        let labels = [(URL, v1.as_str()), (HEADERS, "X-Auth-User")];
        apply(&mut driver, task.addr, &labels).await;
        assert_eq!(get(port, "a.example", "/", forged).await.status, 302);
        let good = get(
            port,
            "a.example",
            "/",
            "cookie: session=good\r\nx-auth-user: mallory\r\n",
        )
        .await;
        assert_eq!(header(&good.body, "x-auth-user"), ["alice"], "{good:?}");

        // Edited: another URL, whose answer is bob for anyone.
        let v2 = format!("http://{}/v2", auth.addr);
        let labels = [(URL, v2.as_str()), (HEADERS, "X-Auth-User")];
        apply(&mut driver, task.addr, &labels).await;
        let bob = get(port, "a.example", "/", forged).await;
        assert_eq!(header(&bob.body, "x-auth-user"), ["bob"], "{bob:?}");

        // A bad value: the error names service, label and reason; the last good URL stays.
        for (bad, reason) in [
            ("https://auth.example/verify", "https is not offered"),
            ("http://user:pw@auth.example/", "credentials"),
            ("http://auth.example/a b", "not allowed"),
            ("http://auth.example/\nserver x 1.2.3.4:80", "not allowed"),
            ("ftp://auth.example/", "must start with http://"),
            ("http://auth.example:99999/", "port"),
            ("http://-bad-.example/", "host"),
            ("", "1 to 512"),
        ] {
            let labels = [(URL, bad), (HEADERS, "X-Auth-User")];
            let text = errors(task.addr, &labels).join("\n");
            assert!(
                text.starts_with(&format!("service web: label {URL}=")) && text.contains(reason),
                "{bad:?}: {text}"
            );
            apply(&mut driver, task.addr, &labels).await;
            let kept = get(port, "a.example", "/", forged).await;
            assert_eq!(
                header(&kept.body, "x-auth-user"),
                ["bob"],
                "{bad:?}: {kept:?}"
            );
        }
        let text = errors(task.addr, &[(URL, v2.as_str()), (HEADERS, "Host")]).join("\n");
        assert!(text.contains("not a list of header names"), "{text}");

        // Removed: the route is open again, the client's headers its own.
        apply(&mut driver, task.addr, &[]).await;
        let open = get(port, "a.example", "/", forged).await;
        assert_eq!(header(&open.body, "x-auth-user"), ["mallory"], "{open:?}");
        assert_eq!(
            reloads(&master).await,
            after_create,
            "no forward-auth edit reloads"
        );
    }
}

/// A template that loads no Lua (no `{{lua}}` line, `global` not alone on its line) cannot
/// run forward auth: the label is refused by name (and the rules never call the action:
/// `haproxy::auth::forward_rules`' unit test). Since the header actions of `shaping.md` came,
/// HAProxy refuses such a config anyway, so this is checked on the model only.
#[test]
fn a_template_that_loads_no_lua_refuses_the_label() {
    let template = swarm_lb::haproxy::render::BASE_TEMPLATE
        .lines()
        .filter(|l| !l.contains(swarm_lb::haproxy::render::LUA))
        .map(|l| match l {
            "global" => "global # no Lua",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!swarm_lb::haproxy::render::template_loads_lua(&template));
    assert!(swarm_lb::haproxy::render::template_loads_lua(
        swarm_lb::haproxy::render::BASE_TEMPLATE
    ));
    // The label itself is refused by name.
    let snap = Snapshot {
        services: swarm_lb::model::shared(vec![Service {
            id: "id-web".into(),
            name: "web".into(),
            labels: BTreeMap::from([
                ("com.docker.lb.hosts".to_owned(), "a.example".to_owned()),
                ("com.docker.lb.port".to_owned(), "80".to_owned()),
                (
                    "com.docker.lb.auth_forward".to_owned(),
                    "http://auth:9091/".to_owned(),
                ),
            ]),
            networks: vec!["n".into()],
            vips: vec![],
        }]),
        tasks: vec![],
        networks: vec![support::front_network("n")],
    };
    let settings = swarm_lb::model::Settings {
        template_without_lua: true,
        ..Default::default()
    };
    let desired = swarm_lb::model::desired(&snap, &settings, &BTreeMap::new());
    let text: Vec<String> = desired.errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].starts_with(
            "service web: label com.docker.lb.auth_forward=\"http://auth:9091/\": not applied: the template (--template) loads no Lua"
        ),
        "{text:?}"
    );
    assert!(desired.routes.is_empty());
}

/// A DNS server on 127.0.0.1 answering `name` with 127.0.0.1 (A) and nothing else (an
/// empty answer), one question per packet (RFC 1035 4.1). Stops on drop.
struct Dns {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn dns(name: &'static str) -> Dns {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind dns");
    let addr = socket.local_addr().expect("dns addr");
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let query = &buf[..n];
            // The question: labels up to a zero byte, then type and class.
            let mut i = 12;
            let mut labels = Vec::new();
            while i < n && query[i] != 0 {
                let len = usize::from(query[i]);
                labels.push(
                    String::from_utf8_lossy(&query[i + 1..(i + 1 + len).min(n)]).into_owned(),
                );
                i += 1 + len;
            }
            let end = i + 5;
            if end > n {
                continue;
            }
            let is_a = query[i + 1..i + 3] == [0, 1];
            let found = labels.join(".") == name && is_a;
            let mut reply = query[..2].to_vec();
            reply.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(found), 0, 0, 0, 0]);
            reply.extend_from_slice(&query[12..end]);
            if found {
                reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
            }
            let _ = socket.send_to(&reply, peer).await;
        }
    });
    Dns { addr, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_in_the_url_is_resolved_by_haproxys_resolvers_as_a_service_name_would_be() {
    let auth = Server::start(auth_answer).await;
    let task = Server::start(echo_answer).await;
    let names = dns("authsvc.test").await;
    let mut state = ProxyState::default();
    route(
        &mut state,
        "web",
        task_backend(&[task.addr], 2),
        &["a.example"],
    );
    let url = format!("http://authsvc.test:{}/verify", auth.addr.port());
    state.hosts.insert(
        forward_key("web"),
        forward_value(&forward(url, &["X-Auth-User"])),
    );
    // On a Swarm the HTTP client uses HAProxy's `default` resolvers (the container's
    // /etc/resolv.conf: Docker's DNS); here a section naming the test's server.
    let haproxy = Haproxy::start_tweaked(&state, false, |s| {
        s.template = s.template.replacen(
            "\nglobal\n",
            "\nglobal\n    httpclient.resolvers.id swarm_lb_test\n",
            1,
        ) + &format!(
            "\nresolvers swarm_lb_test\n    nameserver test {}\n",
            names.addr
        );
    })
    .await;
    let got = get(
        haproxy.http_port,
        "a.example",
        "/",
        "cookie: session=good\r\n",
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(header(&got.body, "x-auth-user"), ["alice"], "{}", got.body);
    assert_eq!(auth.heads().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_the_deny_list_refuses_gets_403_and_never_reaches_the_auth_service() {
    use swarm_lb::model::access::{map_entries, parse_cidr_list, AccessPolicy};
    let auth = Server::start(auth_answer).await;
    let task = Server::start(echo_answer).await;
    let mut state = ProxyState::default();
    route(
        &mut state,
        "web",
        task_backend(&[task.addr], 2),
        &["a.example"],
    );
    let policy = AccessPolicy {
        deny: parse_cidr_list("127.0.0.0/8").expect("cidr"),
        forward: Some(forward(
            format!("http://{}/verify", auth.addr),
            &["X-Auth-User"],
        )),
        ..AccessPolicy::default()
    };
    state.hosts.extend(map_entries([("web", &policy)]));
    let haproxy = Haproxy::start(&state).await;
    let got = get(
        haproxy.http_port,
        "a.example",
        "/",
        "cookie: session=good\r\n",
    )
    .await;
    assert_eq!(got.status, 403, "{got:?}");
    assert!(auth.heads().is_empty(), "asked: {:?}", auth.heads());
    assert!(task.heads().is_empty(), "reached: {:?}", task.heads());
}
