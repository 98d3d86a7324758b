//! Route policies (issues 23 and 24) on a real Swarm, through the stack's published port: who
//! may reach a route (allow and deny lists, a rate limit measured, basic auth from a Docker
//! secret) and how a route behaves (headers, compression, a server timeout, active health
//! checks). Each edit is a `docker service update` under load; allowed clients and healthy
//! tasks see no failed request. The per-version cost of each edit (map edit, reload before
//! 3.4, generation from 3.4) is asserted by the real-HAProxy suites (`tests/access.rs`,
//! `tests/shaping.rs`); here the point is Swarm, the copy job and the product stack.

use std::process::Command;
use std::time::{Duration, Instant};

use swarm_lb_e2e::docker::{docker, try_docker, Network, Service};
use swarm_lb_e2e::load::{self, Load};
use swarm_lb_e2e::stack::Stack;
use swarm_lb_e2e::{poll_until, unique};

const APP: &str = "swarm-lb/testapp:1";
const CONVERGE: Duration = Duration::from_secs(90);

struct Env {
    stack: Stack,
    cluster: String,
}

impl Env {
    async fn up() -> Env {
        let cluster = unique("c");
        let stack = Stack::up(&[("SWARM_LB_SERVICE_CLUSTER", cluster.as_str())]).await;
        Env { stack, cluster }
    }

    fn service(&self, net: &Network, host: &str, replicas: u32, extra: &[&str]) -> Service {
        Service::routed(
            &unique("pol"),
            APP,
            &self.cluster,
            net,
            host,
            replicas,
            extra,
        )
    }

    /// Wait until HAProxy's ready servers of `svc` are exactly its `n` running tasks.
    async fn converged(&self, svc: &Service, net: &Network, n: usize) {
        poll_until(CONVERGE, &format!("{} on {n} tasks", svc.name), || async {
            let tasks = svc.running_task_ips(&net.id);
            let ready = self.stack.ready_addrs(&svc.name).await;
            (tasks.len() == n && ready == tasks).then_some(())
        })
        .await;
    }

    /// Wait until `GET path` for `host` (with `headers`) answers `status`.
    async fn answers(&self, host: &str, path: &str, headers: &str, status: u16) -> load::Reply {
        poll_until(
            CONVERGE,
            &format!("{host}{path} answering {status}"),
            || async {
                let r = load::get_with(self.stack.http_port, host, path, headers)
                    .await
                    .ok()?;
                (r.status == status).then_some(r)
            },
        )
        .await
    }

    /// `curl` (a real HTTP client) for `host`'s `path`: the response head, lower-cased names.
    fn curl_head(&self, host: &str, path: &str, args: &[&str]) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.stack.http_port);
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10"])
            .args(["-H", &format!("Host: {host}")])
            .args(args)
            .arg(&url)
            .output()
            .expect("curl (apt-get install curl)");
        assert!(out.status.success(), "curl {url}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    }
}

fn host(prefix: &str) -> String {
    format!("{}.test", unique(prefix))
}

/// A header line's value in a response head from [`Env::curl_head`].
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}

/// Docker secrets, removed on drop.
struct Secrets(Vec<String>);

impl Drop for Secrets {
    fn drop(&mut self) {
        for name in &self.0 {
            for _ in 0..50 {
                if try_docker(&["secret", "rm", name]).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// An htpasswd file with `user`'s bcrypt line, made by Debian's `htpasswd` (apache2-utils).
fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbB", user, password])
        .output()
        .unwrap_or_else(|e| {
            panic!("htpasswd: {e} (apt-get install apache2-utils, or bash scripts/setup.sh)")
        });
    assert!(out.status.success(), "htpasswd: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn basic(user: &str, password: &str) -> String {
    use std::io::Write;
    // RFC 7617: base64 of user:password (no crate needed for one header: `base64` from coreutils).
    let mut child = Command::new("base64")
        .args(["-w", "0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64 (coreutils)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{user}:{password}").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("base64");
    format!(
        "authorization: Basic {}\r\n",
        String::from_utf8(out.stdout).expect("utf-8").trim()
    )
}

/// Issue 23, end to end: the client address HAProxy sees decides, an allow-list edit under
/// load never fails the allowed client, a rate limit lets through what its label says (within
/// 10 %), and basic auth takes its user list from a Docker secret the copy job delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_labels_decide_who_is_let_in_and_an_edit_under_load_fails_no_allowed_request() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("acc");
    let svc = env.service(&net, &h, 2, &[]);
    env.converged(&svc, &net, 2).await;
    // The address HAProxy sees for this test's requests (Docker's proxy on the bridge): the
    // task reads it from the X-Forwarded-For HAProxy sets.
    let seen = env.answers(&h, "/headers", "", 200).await;
    let client = seen
        .body
        .lines()
        .find_map(|l| l.strip_prefix("header.x-forwarded-for="))
        .expect("x-forwarded-for reaches the task")
        .trim()
        .to_owned();
    println!("the edge sees this test's requests from {client}");

    svc.update(&["--label-add", &format!("com.docker.lb.ip_deny={client}")]);
    env.answers(&h, "/", "", 403).await;
    // Allowed by an allow list instead, under load: the allowed client never fails.
    let l = Load::start(env.stack.http_port, &h, "/", 4, Duration::from_millis(10));
    svc.update(&[
        "--label-rm",
        "com.docker.lb.ip_deny",
        "--label-add",
        &format!("com.docker.lb.ip_allow={client}/32,192.0.2.0/24"),
    ]);
    env.answers(&h, "/", "", 200).await;
    let summary = l.stop().await;
    println!("allow list edited under load: {summary}");
    // Requests before the edit was applied met the deny list: 403s, nothing else.
    assert_eq!(summary.errors, 0, "{summary}");
    assert!(
        summary.bad_status.keys().all(|s| *s == 403),
        "only the deny list's 403 before the edit: {summary}"
    );
    let l = Load::start(env.stack.http_port, &h, "/", 4, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let allowed = l.stop().await;
    assert_eq!(allowed.failed(), 0, "the allowed client: {allowed}");
    assert!(allowed.ok > 20, "{allowed}");
    // An allow list without this client: refused (never open).
    svc.update(&["--label-add", "com.docker.lb.ip_allow=192.0.2.0/24"]);
    env.answers(&h, "/", "", 403).await;

    // Basic auth from a Docker secret, delivered by the stack's copy job.
    let secret = unique("users");
    let file = std::env::temp_dir().join(&secret);
    std::fs::write(&file, htpasswd_line("alice", "wonder-land")).expect("write htpasswd");
    docker(&["secret", "create", &secret, &file.to_string_lossy()]);
    let _secrets = Secrets(vec![secret.clone()]);
    let _ = std::fs::remove_file(&file);
    svc.update(&[
        "--label-rm",
        "com.docker.lb.ip_allow",
        "--label-add",
        &format!("com.docker.lb.auth_basic={secret}"),
        "--label-add",
        "com.docker.lb.auth_realm=staff only",
    ]);
    let alice = basic("alice", "wonder-land");
    env.answers(&h, "/", &alice, 200).await;
    let refused = env.answers(&h, "/", "", 401).await;
    assert!(refused.body.len() < 200, "{}", refused.body);
    let head = env.curl_head(&h, "/", &[]);
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert_eq!(
        header(&head, "www-authenticate"),
        Some("basic realm=\"staff only\""),
        "{head}"
    );
    let wrong = load::get_with(
        env.stack.http_port,
        &h,
        "/",
        &basic("alice", "not-the-password"),
    )
    .await
    .expect("get");
    assert_eq!(wrong.status, 401);
    // Nothing of the password or its hash in swarm-lb's log.
    let log = env.stack.swarm_lb_log();
    assert!(
        !log.contains("wonder-land") && !log.contains("$2y$"),
        "a secret in the log"
    );
}

/// Issue 23: `rate_limit=10/s`, a client asking as fast as it can for 4 s is let in 10 times
/// a second (within 10 %), and every refusal is a 429 with `Retry-After: 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_lets_a_hammering_client_through_at_the_labels_rate_within_ten_percent() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("rate");
    let svc = env.service(&net, &h, 1, &["--label", "com.docker.lb.rate_limit=10/s"]);
    env.converged(&svc, &net, 1).await;
    // The label applied: a burst beyond 10 meets a 429.
    poll_until(CONVERGE, "the rate limit applied", || async {
        let mut refused = false;
        for _ in 0..15 {
            refused |= matches!(load::get(env.stack.http_port, &h, "/").await, Ok((429, _)));
        }
        refused.then_some(())
    })
    .await;
    // A fresh window: the limit counts the last 1 s (and 10 s), so wait them out.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let started = Instant::now();
    let window = Duration::from_secs(4);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (port, h) = (env.stack.http_port, h.clone());
            tokio::spawn(async move {
                let (mut ok, mut refused, mut other) = (0u32, 0u32, 0u32);
                while started.elapsed() < window {
                    match load::get(port, &h, "/").await {
                        Ok((200, _)) => ok += 1,
                        Ok((429, _)) => refused += 1,
                        _ => other += 1,
                    }
                }
                (ok, refused, other)
            })
        })
        .collect();
    let (mut ok, mut refused, mut other) = (0, 0, 0);
    for w in workers {
        let (o, r, x) = w.await.expect("worker");
        (ok, refused, other) = (ok + o, refused + r, other + x);
    }
    let rate = f64::from(ok) / window.as_secs_f64();
    println!(
        "rate_limit=10/s, 2 clients from one address for 4 s: {ok} let in ({rate:.2}/s), \
         {refused} refused with 429, {other} other"
    );
    assert_eq!(other, 0, "only 200 and 429");
    assert!(refused > 0, "the client asked faster than the limit");
    assert!(
        (9.0..=11.0).contains(&rate),
        "{rate:.2}/s, not within 10 % of 10/s"
    );
    let head = env.curl_head(&h, "/", &[]);
    if head.starts_with("http/1.1 429") {
        assert_eq!(header(&head, "retry-after"), Some("1"), "{head}");
    }
}

/// Issue 24, end to end: headers set on responses and requests, compression, a server
/// timeout, and active health checks on a service of three tasks; a header edit under load
/// and a task failing its health path (then recovering) fail no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaping_labels_apply_and_an_edit_or_a_failing_health_path_fails_no_request() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("shape");
    let svc = env.service(
        &net,
        &h,
        3,
        &[
            "--label",
            "com.docker.lb.response_header.X-Frame-Options=DENY",
            "--label",
            "com.docker.lb.request_header.X-Request-Id=from-the-edge",
            "--label",
            "com.docker.lb.hsts=max-age=31536000",
            "--label",
            "com.docker.lb.compress=true",
            "--label",
            "com.docker.lb.timeout_server=2s",
            "--label",
            "com.docker.lb.health_path=/health",
            "--label",
            "com.docker.lb.health_interval=500ms",
        ],
    );
    env.converged(&svc, &net, 3).await;
    let seen = env.answers(&h, "/headers", "", 200).await;
    assert!(
        seen.body.contains("header.x-request-id=from-the-edge\n"),
        "the request header reaches the task: {}",
        seen.body
    );
    // curl --compressed offers deflate first, which HAProxy takes: ask for gzip alone.
    let head = env.curl_head(
        &h,
        "/text",
        &["--compressed", "-H", "Accept-Encoding: gzip"],
    );
    assert_eq!(header(&head, "x-frame-options"), Some("deny"), "{head}");
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(
        header(&head, "strict-transport-security"),
        None,
        "HSTS on HTTPS responses only: {head}"
    );
    // The server timeout: a task slower than 2 s gets the client a 504, after about 2 s.
    let asked = Instant::now();
    let (status, _) = load::get(env.stack.http_port, &h, "/slow?ms=5000")
        .await
        .expect("get");
    let waited = asked.elapsed();
    println!("timeout_server=2s: /slow?ms=5000 answered {status} after {waited:?}");
    assert_eq!(status, 504);
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_millis(4500),
        "{waited:?}"
    );

    // A header edit under load.
    let l = Load::start(env.stack.http_port, &h, "/", 4, Duration::from_millis(10));
    svc.update(&[
        "--label-add",
        "com.docker.lb.response_header.X-Frame-Options=SAMEORIGIN",
    ]);
    poll_until(CONVERGE, "the new header value", || async {
        let head = env.curl_head(&h, "/", &[]);
        (header(&head, "x-frame-options") == Some("sameorigin")).then_some(())
    })
    .await;
    let summary = l.stop().await;
    println!("header edited under load: {summary}");
    assert_eq!(summary.failed(), 0, "{summary}");

    // One task of three fails its health path: out of rotation, no request fails; back when
    // it passes again.
    env.converged(&svc, &net, 3).await;
    let container = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={}", svc.name),
    ])
    .lines()
    .next()
    .expect("a task container")
    .to_owned();
    let l = Load::start(env.stack.http_port, &h, "/", 4, Duration::from_millis(10));
    docker(&[
        "exec",
        &container,
        "/usr/local/bin/testapp",
        "fail-health",
        "on",
    ]);
    let out = Instant::now();
    poll_until(CONVERGE, "the unhealthy task out of rotation", || async {
        let up = env.stack.servers(&svc.name).await;
        let running: Vec<_> = up
            .iter()
            .filter(|s| s.op_state == 2 && !s.addr.is_unspecified())
            .collect();
        (running.len() == 2).then_some(())
    })
    .await;
    let taken_out = out.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    docker(&[
        "exec",
        &container,
        "/usr/local/bin/testapp",
        "fail-health",
        "off",
    ]);
    let back = Instant::now();
    poll_until(CONVERGE, "the task back in rotation", || async {
        let up = env.stack.servers(&svc.name).await;
        (up.iter()
            .filter(|s| s.op_state == 2 && !s.addr.is_unspecified())
            .count()
            == 3)
            .then_some(())
    })
    .await;
    let returned = back.elapsed();
    let summary = l.stop().await;
    println!(
        "health_interval=500ms: out {taken_out:?} after its /health failed, back {returned:?} \
         after it passed; load: {summary}"
    );
    assert_eq!(summary.failed(), 0, "{summary}");
}

/// `com.docker.lb.auth_forward` on a Swarm: the auth service is another service on the
/// overlay, named through Docker's embedded DNS, which HAProxy's HTTP client asks (its
/// container's resolvers). Named `tasks.<service>` (a task's address), not `<service>` (the
/// VIP): on the test machines a service VIP does not answer from a container attached to the
/// overlay (`nc <vip> 8080` from a busybox container: "No route to host", the task address
/// answers), which is also why routed services default to task mode. A test app stands in for it: `/health`
/// answers 200 (let through), any unknown path 404 (sent back as it is), a closed port
/// nothing (503). Each edit is a label update; the per-version reload counts are asserted in
/// `tests/forward_auth.rs`.
#[tokio::test]
async fn forward_auth_asks_another_service_by_name_on_the_overlay_and_its_answer_decides() {
    let env = Env::up().await;
    let net = Network::create(&unique("fa"));
    let auth = Service::create(&unique("faauth"), APP, &["--network", &net.name]);
    let h = host("fa");
    let svc = env.service(&net, &h, 1, &[]);
    env.converged(&svc, &net, 1).await;
    env.answers(&h, "/headers", "", 200).await;

    let url = |path: &str| {
        format!(
            "com.docker.lb.auth_forward=http://tasks.{}:8080{path}",
            auth.name
        )
    };
    svc.update(&["--label-add", &url("/health")]);
    // Let through: the task's answer, with the auth service asked by name first.
    let through = env.answers(&h, "/headers", "", 200).await;
    assert!(through.body.contains("header.host="), "{}", through.body);
    // Refused: the auth service's own 404 and body, as it is.
    svc.update(&["--label-add", &url("/no-such-page")]);
    let refused = env.answers(&h, "/headers", "", 404).await;
    assert_eq!(refused.body, "not found\n");
    // Unreachable: closed.
    svc.update(&[
        "--label-add",
        &format!("com.docker.lb.auth_forward=http://tasks.{}:1/", auth.name),
    ]);
    env.answers(&h, "/headers", "", 503).await;
    // Removed: open again.
    svc.update(&["--label-rm", "com.docker.lb.auth_forward"]);
    env.answers(&h, "/headers", "", 200).await;
}
