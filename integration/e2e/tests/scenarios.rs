//! swarm-lb end to end on a real one-node Swarm: `docker-compose.yml` on locally built images,
//! services running `integration/testapp`, HTTP through HAProxy's published loopback port.
//! Each scenario checks three things: HAProxy's runtime state (`show servers state`), real HTTP
//! answers, and the master's reload counter (`show proc`).
//!
//! Every stack runs with its own `com.docker.lb.service_cluster`, so stacks of scenarios that
//! run side by side never route each other's services.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use swarm_lb::haproxy::codec::admin_from_bits;
use swarm_lb::haproxy::Admin;
use swarm_lb_e2e::docker::{container_networks, docker, try_docker, Network, Service};
use swarm_lb_e2e::load::{self, Load};
use swarm_lb_e2e::stack::Stack;
use swarm_lb_e2e::{poll_until, unique};

const APP1: &str = "swarm-lb/testapp:1";
const APP2: &str = "swarm-lb/testapp:2";
/// Tasks take a couple of seconds to start; updates of 3 replicas take ~20 s here.
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

    /// A routed testapp service on `net`, labelled for this stack's cluster.
    fn service(&self, net: &Network, host: &str, replicas: u32, extra: &[&str]) -> Service {
        let name = unique("svc");
        Service::routed(&name, APP1, &self.cluster, net, host, replicas, extra)
    }

    /// Wait until HAProxy's ready servers of `svc` are exactly its running tasks (n of them).
    async fn converged(&self, svc: &Service, net: &Network, n: usize) -> Vec<String> {
        poll_until(
            CONVERGE,
            &format!("{} routed to {n} running tasks", svc.name),
            || async {
                let tasks = svc.running_task_ips(&net.id);
                let ready = self.stack.ready_addrs(&svc.name).await;
                (tasks.len() == n && ready == tasks).then_some(ready)
            },
        )
        .await
    }

    /// Wait until every one of `n` tasks answered through HAProxy for `host`.
    async fn all_answer(&self, host: &str, n: usize) -> BTreeSet<String> {
        let port = self.stack.http_port;
        let deadline = tokio::time::Instant::now() + CONVERGE;
        let mut seen = BTreeSet::new();
        while seen.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} tasks answering for {host}; saw {seen:?}"
            );
            match load::get(port, host, "/").await {
                Ok((200, body)) => {
                    if let Some(task) = body.lines().find_map(|l| l.strip_prefix("task=")) {
                        seen.insert(task.to_owned());
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        seen
    }

    async fn status(&self, host: &str) -> u16 {
        load::get(self.stack.http_port, host, "/")
            .await
            .map(|(s, _)| s)
            .unwrap_or(0)
    }
}

fn host(prefix: &str) -> String {
    format!("{}.test", unique(prefix))
}

fn load(env: &Env, host: &str) -> Load {
    Load::start(env.stack.http_port, host, "/", 4, Duration::from_millis(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_service_is_routed_and_every_replica_answers() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("one");
    let reloads_before = env.stack.reloads().await;
    let per = env.stack.reloads_per_backend().await;
    let svc = env.service(
        &net,
        &h,
        3,
        &["--label", "com.docker.lb.websocket_endpoints=/ws"],
    );
    let ready = env.converged(&svc, &net, 3).await;
    assert_eq!(ready.len(), 3);
    let tasks = env.all_answer(&h, 3).await;
    assert_eq!(tasks.len(), 3, "answers from {tasks:?}");
    assert!(tasks.iter().all(|t| t.starts_with(&svc.name)), "{tasks:?}");
    assert_eq!(
        env.stack.reloads().await,
        reloads_before + per,
        "creating the backend is the one reload (none from 3.4)"
    );
    assert_eq!(
        env.status("nobody.test").await,
        503,
        "unknown hosts get the 503"
    );

    // A websocket through HAProxy to the task's echo endpoint.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", env.stack.http_port))
        .await
        .expect("connect to HAProxy");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{h}/ws").as_str(), stream)
        .await
        .expect("websocket handshake through HAProxy");
    for text in ["hello", "again"] {
        ws.send(Message::Text(text.into())).await.expect("send");
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo within 5 s")
            .expect("an open socket")
            .expect("a message");
        assert_eq!(echo, Message::Text(text.into()));
    }
    assert!(
        !env.stack.swarm_lb_log().contains("websocket_endpoints"),
        "the label is neither an error nor a warning"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_under_load_fails_no_request_and_never_reloads() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("scale");
    let svc = env.service(&net, &h, 1, &[]);
    env.converged(&svc, &net, 1).await;
    env.all_answer(&h, 1).await;
    let reloads = env.stack.reloads().await;

    let l = load(&env, &h);
    for n in [6, 2] {
        svc.scale(n);
        env.converged(&svc, &net, n as usize).await;
    }
    let summary = l.stop().await;
    println!("scale 1 -> 6 -> 2 under load: {summary}");
    assert!(summary.ok > 100, "{summary}");
    assert_eq!(summary.failed(), 0, "{summary}");

    // With no replica there is nothing to serve: HAProxy answers 503 and holds no task.
    svc.scale(0);
    poll_until(CONVERGE, "no ready server", || async {
        env.stack
            .ready_addrs(&svc.name)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(env.status(&h).await, 503);

    svc.scale(3);
    env.converged(&svc, &net, 3).await;
    env.all_answer(&h, 3).await;
    let l = load(&env, &h);
    tokio::time::sleep(Duration::from_secs(2)).await; // a window of load, not a wait for state
    let summary = l.stop().await;
    println!("after 0 -> 3: {summary}");
    assert_eq!(summary.failed(), 0, "{summary}");
    assert_eq!(env.stack.reloads().await, reloads, "scaling never reloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_in_both_orders_under_load_fail_no_request_and_never_reload() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("roll");
    let svc = env.service(
        &net,
        &h,
        3,
        &["--update-parallelism", "1", "--update-delay", "0s"],
    );
    env.converged(&svc, &net, 3).await;
    env.all_answer(&h, 3).await;
    let reloads = env.stack.reloads().await;

    for (order, image) in [("stop-first", APP2), ("start-first", APP1)] {
        let l = load(&env, &h);
        svc.update(&["--image", image, "--update-order", order]);
        env.converged(&svc, &net, 3).await;
        let summary = l.stop().await;
        println!("rolling update {order} to {image} under load: {summary}");
        assert!(summary.ok > 100, "{summary}");
        assert_eq!(summary.failed(), 0, "{order}: {summary}");
        let (status, body) = load::get(env.stack.http_port, &h, "/").await.expect("get");
        let version = if image == APP2 {
            "version=2"
        } else {
            "version=1"
        };
        assert_eq!(status, 200);
        assert!(body.contains(version), "{order}: {body}");
    }
    assert_eq!(env.stack.reloads().await, reloads, "updates never reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vip_service_is_pinned_at_its_vip_and_scaling_or_updating_it_changes_nothing_in_haproxy()
{
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("vip");
    let svc = env.service(&net, &h, 1, &["--label", "com.docker.lb.backend_mode=vip"]);
    let vip = poll_until(CONVERGE, "the service's VIP", || async { svc.vip(&net.id) }).await;
    let servers = poll_until(CONVERGE, "the vip server", || async {
        let rows = env.stack.servers(&svc.name).await;
        (rows.len() == 1 && admin_from_bits(rows[0].admin_state) == Admin::Ready).then_some(rows)
    })
    .await;
    assert_eq!(servers[0].server.as_str(), "vip");
    assert_eq!(servers[0].addr.to_string(), vip);
    assert_eq!(servers[0].port, 8080);

    let reloads = env.stack.reloads().await;
    // When Swarm allocates the VIP after swarm-lb first saw the service, the service is first
    // routed to its tasks, then moves to a new backend generation pinned at the VIP, and the
    // old generation is retired a second later by a pass of its own (the retirement hold):
    // the baseline is taken once HAProxy holds the one generation.
    poll_until(
        CONVERGE,
        "one backend generation for the service",
        || async {
            let names = env.stack.backend_names().await;
            let own: Vec<String> = names
                .into_iter()
                .filter(|n| n.split(':').next() == Some(svc.name.as_str()))
                .collect();
            (own.len() == 1).then_some(())
        },
    )
    .await;
    // The pass that created (or retired) a backend logs "plan applied" just after HAProxy
    // holds the change: wait for that line (after the retirement's, when there was one).
    let plans = poll_until(CONVERGE, "the last pass's log line", || async {
        let log = env.stack.swarm_lb_log();
        let applied = log.rfind("plan applied");
        let settled = match log.rfind("old backend generation retired") {
            Some(retired) => applied.is_some_and(|a| a > retired),
            None => applied.is_some(),
        };
        settled.then(|| env.stack.applied_plans())
    })
    .await;
    svc.scale(3);
    poll_until(CONVERGE, "3 running tasks", || async {
        (svc.running_task_ips(&net.id).len() == 3).then_some(())
    })
    .await;
    svc.update(&[
        "--image",
        APP2,
        "--env-add",
        "EXTRA=1",
        "--label-add",
        "team=blue",
    ]);
    // Let the watcher see the settled state and a resync pass run over it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = env.stack.servers(&svc.name).await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].addr, after[0].port, after[0].admin_state),
        (servers[0].addr, 8080, 0)
    );
    assert_eq!(
        env.stack.applied_plans(),
        plans,
        "no runtime command for a vip service's churn"
    );
    assert_eq!(env.stack.reloads().await, reloads, "no reload either");

    if std::path::Path::new("/proc/net/ip_vs").exists() {
        let tasks = env.all_answer(&h, 1).await;
        println!("data path through the VIP answered: {tasks:?}");
    } else {
        println!(
            "SKIPPED data-path check through the VIP: this kernel has no IPVS (/proc/net/ip_vs \
             absent), so Swarm's VIP forwards nothing here; the control plane was checked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_hosts_or_default_backend_label_is_a_map_edit_not_a_reload() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let old = host("old");
    let new = host("new");
    let svc = env.service(&net, &old, 1, &[]);
    env.converged(&svc, &net, 1).await;
    env.all_answer(&old, 1).await;
    let reloads = env.stack.reloads().await;

    svc.update(&["--label-add", &format!("com.docker.lb.hosts={new}")]);
    env.all_answer(&new, 1).await;
    poll_until(CONVERGE, "the old host to stop routing", || async {
        (env.status(&old).await == 503).then_some(())
    })
    .await;
    assert_eq!(env.stack.reloads().await, reloads);

    // The default backend label is a map edit too: unknown hosts reach the service, then 503.
    svc.update(&["--label-add", "com.docker.lb.default_backend=true"]);
    env.all_answer("nobody.test", 1).await;
    env.all_answer(&old, 1).await;
    svc.update(&["--label-rm", "com.docker.lb.default_backend"]);
    poll_until(CONVERGE, "unknown hosts to get the 503 again", || async {
        (env.status("nobody.test").await == 503).then_some(())
    })
    .await;
    assert_eq!(
        env.stack.reloads().await,
        reloads,
        "no reload for any of it"
    );
}

impl Env {
    /// Wait until swarm-lb logged a line holding every one of `parts`; returns it.
    async fn logged(&self, what: &str, parts: &[&str]) -> String {
        poll_until(CONVERGE, what, || async {
            self.stack
                .swarm_lb_log()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_owned)
        })
        .await
    }

    async fn answers_until(&self, host: &str, want: u16) {
        poll_until(
            CONVERGE,
            &format!("Host: {host} to answer {want}"),
            || async { (self.status(host).await == want).then_some(()) },
        )
        .await;
    }
}

/// Issue 8, cases 1-3 as an operator runs them: a host list copied from a document, absolute
/// host names, a bad item added by hand, then the hosts label removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_host_list_routes_absolute_names_too_and_removing_the_hosts_label_unroutes_it(
) {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let (a, b, c) = (host("a"), host("b"), host("c"));
    let other_host = host("other");
    let other = env.service(&net, &other_host, 1, &[]);
    env.converged(&other, &net, 1).await;
    let reloads = env.stack.reloads().await;
    let l = load(&env, &other_host);

    // Spaces on either side of commas and a trailing comma: every host routes, one warning.
    let name = unique("svc");
    let labels = [
        format!("com.docker.lb.hosts={a}, {b} ,{c},"),
        "com.docker.lb.port=8080".to_owned(),
        format!("com.docker.lb.service_cluster={}", env.cluster),
    ];
    let mut args: Vec<&str> = vec!["--network", &net.name, "--replicas", "1"];
    for label in &labels {
        args.extend(["--label", label]);
    }
    let svc = Service::create(&name, APP1, &args);
    env.converged(&svc, &net, 1).await;
    for h in [&a, &b, &c] {
        env.all_answer(h, 1).await;
    }
    env.logged(
        "one warning about the empty item",
        &[
            "WARN",
            &format!("service {name}"),
            "com.docker.lb.hosts has empty items",
        ],
    )
    .await;
    // Absolute names (trailing dot), with and without a port, route like the name.
    for h in [
        format!("{a}."),
        format!("{b}.:80"),
        format!("{}.", c.to_uppercase()),
    ] {
        assert_eq!(env.status(&h).await, 200, "Host: {h}");
    }
    assert_eq!(
        env.status(&format!("{a}..")).await,
        503,
        "two dots are no host"
    );
    let per = env.stack.reloads_per_backend().await;
    assert_eq!(
        env.stack.reloads().await,
        reloads + per,
        "creating the backend (a reload before 3.4)"
    );

    // A bad item typed by hand: refused alone, by name; the other host keeps routing.
    svc.update(&["--label-add", &format!("com.docker.lb.hosts={a},bad;item")]);
    env.answers_until(&b, 503).await;
    env.all_answer(&a, 1).await;
    env.logged(
        "an error naming the service, the label and the bad item",
        &[
            "ERROR",
            &format!("service {name}"),
            "com.docker.lb.hosts",
            "\"bad;item\" is left out",
        ],
    )
    .await;
    assert_eq!(
        env.stack.reloads().await,
        reloads + per,
        "label edits are map edits"
    );

    // The operator removes the hosts label to stop routing the service.
    svc.update(&["--label-rm", "com.docker.lb.hosts"]);
    env.answers_until(&a, 503).await;
    let line = env
        .logged(
            "an info line saying the service is not routed",
            &[
                &format!("service {name}"),
                "is not set, so the service is not routed",
            ],
        )
        .await;
    assert!(line.contains("INFO"), "{line}");
    poll_until(CONVERGE, "its backend to go", || async {
        env.stack.servers(&name).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        env.stack.reloads().await,
        reloads + 2 * per,
        "its backend disappearing is the one reload (none from 3.4)"
    );
    let summary = l.stop().await;
    println!("other service through it all: {summary}");
    assert_eq!(summary.failed(), 0, "{summary}");
    assert_eq!(env.status(&other_host).await, 200);
}

/// Issue 8, case 4: `backend_mode=vip` on a service created with `--endpoint-mode dnsrr` routes
/// its tasks, then follows the service to its VIP and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vip_labelled_dnsrr_service_routes_its_tasks_and_follows_endpoint_mode_changes() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("dnsrr");
    let reloads = env.stack.reloads().await;
    let svc = env.service(
        &net,
        &h,
        2,
        &[
            "--endpoint-mode",
            "dnsrr",
            "--label",
            "com.docker.lb.backend_mode=vip",
        ],
    );
    env.converged(&svc, &net, 2).await;
    assert_eq!(env.all_answer(&h, 2).await.len(), 2);
    env.logged(
        "a warning naming the service, the label and why",
        &[
            "WARN",
            &format!("service {}", svc.name),
            "backend_mode=vip",
            "no VIP",
        ],
    )
    .await;
    let per = env.stack.reloads_per_backend().await;
    assert_eq!(
        env.stack.reloads().await,
        reloads + per,
        "creating the backend (a reload before 3.4)"
    );

    svc.update(&["--endpoint-mode", "vip"]);
    let vip = poll_until(CONVERGE, "the service's VIP", || async { svc.vip(&net.id) }).await;
    poll_until(CONVERGE, "the backend pinned at the VIP", || async {
        let rows = env.stack.servers(&svc.name).await;
        (rows.len() == 1 && rows[0].server.as_str() == "vip" && rows[0].addr.to_string() == vip)
            .then_some(())
    })
    .await;
    assert_eq!(
        env.stack.reloads().await,
        reloads + 2 * per,
        "a backend of another mode: one reload before 3.4, a new generation from 3.4"
    );
    if !std::path::Path::new("/proc/net/ip_vs").exists() {
        println!(
            "SKIPPED data-path check through the VIP: this kernel has no IPVS (/proc/net/ip_vs \
             absent), so Swarm's VIP forwards nothing here; the control plane was checked"
        );
    }

    svc.update(&["--endpoint-mode", "dnsrr"]);
    env.converged(&svc, &net, 2).await;
    assert_eq!(env.all_answer(&h, 2).await.len(), 2);
    assert_eq!(
        env.stack.reloads().await,
        reloads + 3 * per,
        "back to task slots"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_removing_a_routed_service_reloads_once_each_before_3_4_without_failing_other_traffic(
) {
    let env = Env::up().await;
    let per = env.stack.reloads_per_backend().await;
    let net = Network::create(&unique("net"));
    let steady = host("steady");
    let svc = env.service(&net, &steady, 2, &[]);
    env.converged(&svc, &net, 2).await;
    env.all_answer(&steady, 2).await;

    let l = load(&env, &steady);
    let r0 = env.stack.reloads().await;
    let other_host = host("other");
    let other = env.service(&net, &other_host, 1, &[]);
    env.converged(&other, &net, 1).await;
    env.all_answer(&other_host, 1).await;
    let r1 = env.stack.reloads().await;
    assert_eq!(
        r1,
        r0 + per,
        "creating a routed service is one reload (none from 3.4)"
    );

    let other_name = other.name.clone();
    drop(other);
    poll_until(CONVERGE, "the removed service's backend to go", || async {
        let rows = env.stack.servers(&other_name).await;
        (rows.is_empty() && env.stack.reloads().await == r1 + per).then_some(())
    })
    .await;
    assert_eq!(env.status(&other_host).await, 503);
    let summary = l.stop().await;
    println!("steady service during create + remove of another: {summary}");
    assert!(summary.ok > 100, "{summary}");
    assert_eq!(summary.failed(), 0, "{summary}");
    // Nothing else reloads afterwards.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.stack.reloads().await, r1 + per);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_joins_a_new_network_without_restarting_and_leaves_it_with_the_last_service() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let container = env.stack.haproxy_container.clone();
    assert!(!container_networks(&container).contains(&net.id));
    let started = docker(&["inspect", "--format", "{{.State.StartedAt}}", &container]);

    let h = host("net");
    let svc = env.service(&net, &h, 1, &[]);
    env.converged(&svc, &net, 1).await;
    env.all_answer(&h, 1).await;
    assert!(container_networks(&container).contains(&net.id));
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.StartedAt}}", &container]),
        started,
        "attached without a restart"
    );

    drop(svc);
    poll_until(CONVERGE, "haproxy to leave the network", || async {
        (!container_networks(&container).contains(&net.id)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_labels_are_rejected_by_name_and_leave_other_services_and_the_config_intact() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let good_host = host("good");
    let good = env.service(&net, &good_host, 1, &[]);
    env.converged(&good, &net, 1).await;
    env.all_answer(&good_host, 1).await;
    let reloads = env.stack.reloads().await;
    let l = load(&env, &good_host);

    let cluster = format!("com.docker.lb.service_cluster={}", env.cluster);
    let hostile: [(&str, &str); 6] = [
        ("com.docker.lb.hosts", "evil.test\n    server x 1.2.3.4:80"),
        ("com.docker.lb.hosts", "evil.test;show info"),
        ("com.docker.lb.hosts", "evil test"),
        ("com.docker.lb.port", "0"),
        ("com.docker.lb.port", "70000"),
        ("com.docker.lb.backend_mode", "round-robin"),
    ];
    let mut bad = Vec::new();
    for (label, value) in hostile {
        let name = unique("bad");
        let mut args = vec![
            "--network".to_owned(),
            net.name.clone(),
            "--label".to_owned(),
            cluster.clone(),
        ];
        let defaults = [
            ("com.docker.lb.hosts", "bad.test"),
            ("com.docker.lb.port", "8080"),
        ];
        for (k, v) in defaults {
            if k != label {
                args.push("--label".into());
                args.push(format!("{k}={v}"));
            }
        }
        args.push("--label".into());
        args.push(format!("{label}={value}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bad.push((Service::create(&name, APP1, &args), label));
    }
    for (svc, label) in &bad {
        poll_until(
            CONVERGE,
            &format!("an error naming {} and {label}", svc.name),
            || async {
                env.stack
                    .swarm_lb_log()
                    .lines()
                    .any(|l| l.contains(&format!("service {}", svc.name)) && l.contains(label))
                    .then_some(())
            },
        )
        .await;
    }
    let check = try_docker(&[
        "exec",
        &env.stack.haproxy_container,
        "haproxy",
        "-c",
        "-f",
        "/usr/local/etc/haproxy/haproxy.cfg",
    ]);
    assert!(
        check.is_ok(),
        "generated config no longer passes haproxy -c: {check:?}"
    );
    let config = std::fs::read_to_string(env.stack.config_path()).expect("config");
    assert!(
        !config.contains("1.2.3.4"),
        "injected server reached the config"
    );
    for (svc, _) in &bad {
        assert!(
            env.stack.servers(&svc.name).await.is_empty(),
            "{} routed",
            svc.name
        );
    }
    let summary = l.stop().await;
    println!("good service while hostile ones came: {summary}");
    assert_eq!(summary.failed(), 0, "{summary}");
    assert_eq!(
        env.stack.reloads().await,
        reloads,
        "no backend came or went"
    );

    // The operator fixes one: it is routed, and the log says its problem is gone.
    let (fixed, label) = &bad[3];
    assert_eq!(*label, "com.docker.lb.port");
    fixed.update(&["--label-add", "com.docker.lb.port=8080"]);
    env.logged(
        "an info line saying the refused label's problem is gone",
        &["label problem gone", &format!("service={}", fixed.name)],
    )
    .await;
    poll_until(CONVERGE, "the fixed service routed", || async {
        (!env.stack.servers(&fixed.name).await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_swarm_lb_converges_without_a_reload_when_none_is_needed() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("restart");
    let svc = env.service(&net, &h, 2, &[]);
    env.converged(&svc, &net, 2).await;
    env.all_answer(&h, 2).await;
    let reloads = env.stack.reloads().await;

    env.stack.stop_swarm_lb();
    svc.scale(4);
    poll_until(CONVERGE, "4 running tasks", || async {
        (svc.running_task_ips(&net.id).len() == 4).then_some(())
    })
    .await;
    env.stack.start_swarm_lb();
    env.converged(&svc, &net, 4).await;
    env.all_answer(&h, 4).await;
    assert_eq!(env.stack.reloads().await, reloads, "no reload was needed");

    // `swarm-lb plan` against the converged proxy has nothing to do.
    let plan = poll_until(CONVERGE, "swarm-lb plan to find nothing to do", || async {
        let out = try_docker(&["exec", &env.stack.swarm_lb_container, "swarm-lb", "plan"]).ok()?;
        out.contains("nothing to do").then_some(out)
    })
    .await;
    println!("swarm-lb plan: {plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_haproxy_gets_every_route_back() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("hap");
    let svc = env.service(&net, &h, 2, &[]);
    env.converged(&svc, &net, 2).await;
    env.all_answer(&h, 2).await;

    env.stack.restart_haproxy();
    // Change something while it is down or coming back: swarm-lb must notice and apply it.
    svc.scale(3);
    env.converged(&svc, &net, 3).await;
    let tasks = env.all_answer(&h, 3).await;
    assert_eq!(tasks.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_cookie_keeps_each_client_on_its_task_and_turning_ip_hash_on_never_fails_a_request(
) {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("sticky");
    let svc = env.service(
        &net,
        &h,
        3,
        &["--label", "com.docker.lb.sticky_session_cookie=sid"],
    );
    env.converged(&svc, &net, 3).await;
    env.all_answer(&h, 3).await;

    // Without the cookie, each answer sets one naming its task; with it, the same task answers.
    let port = env.stack.http_port;
    let task_of = |body: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix("task="))
            .unwrap_or_default()
            .to_owned()
    };
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while cookies.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no cookie from every task: {cookies:?}"
        );
        let r = load::get_with(port, &h, "/", "").await.expect("GET");
        assert_eq!(r.status, 200, "{r:?}");
        let set = r.set_cookie.clone().expect("a Set-Cookie");
        let value = set
            .strip_prefix("sid=")
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .to_owned();
        assert!(!value.is_empty(), "{set}");
        let task = task_of(&r.body);
        if let Some(before) = cookies.insert(value.clone(), task.clone()) {
            assert_eq!(before, task, "one cookie, two tasks: {value}");
        }
    }
    assert_eq!(
        cookies.values().collect::<BTreeSet<_>>().len(),
        3,
        "{cookies:?}"
    );
    for (value, task) in &cookies {
        for _ in 0..3 {
            let r = load::get_with(port, &h, "/", &format!("Cookie: sid={value}\r\n"))
                .await
                .expect("GET");
            assert_eq!((r.status, task_of(&r.body)), (200, task.clone()), "{value}");
        }
    }

    // ip_hash on, under load: one reload before 3.4; from 3.4 a new backend generation
    // (`<service>:2`) the hosts map switches to, no reload. Nothing failed, one client on
    // one task.
    let per = env.stack.reloads_per_backend().await;
    let reloads = env.stack.reloads().await;
    let l = load(&env, &h);
    svc.update(&["--label-add", "com.docker.lb.ip_hash=true"]);
    let generation = format!(" {}:2", svc.name);
    poll_until(CONVERGE, "ip_hash applied", || async {
        let applied = match per {
            0 => hosts_map(&env).iter().any(|l| l.ends_with(&generation)),
            _ => env.stack.reloads().await > reloads,
        };
        applied.then_some(())
    })
    .await;
    let summary = l.stop().await;
    println!("sticky service while ip_hash is turned on: {summary}");
    assert!(summary.ok > 50, "{summary}");
    assert_eq!(summary.failed(), 0, "{summary}");
    let mut answered = BTreeSet::new();
    for _ in 0..6 {
        let (status, body) = load::get(port, &h, "/").await.expect("GET");
        assert_eq!(status, 200);
        answered.insert(task_of(&body));
    }
    assert_eq!(answered.len(), 1, "one client, one task: {answered:?}");
    assert_eq!(env.stack.reloads().await, reloads + per, "reloads");
}

/// The hosts map swarm-lb wrote, as `key value` lines.
fn hosts_map(env: &Env) -> Vec<String> {
    let path = env.stack.config_path().with_file_name("hosts.map");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many buckets of the route `key` name each service's backend, per the hosts map.
fn buckets(env: &Env, key: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in hosts_map(env) {
        if let Some((k, v)) = line.split_once(' ') {
            if k.starts_with(&format!("~{key}=")) {
                // By service: a backend may be a later generation (`<service>:<n>` from 3.4,
                // e.g. a vip service first routed to its tasks until Swarm gave it a VIP).
                let service = swarm_lb::model::BackendName::parse(v)
                    .map(|b| b.service().to_owned())
                    .unwrap_or_else(|_| v.to_owned());
                *out.entry(service).or_default() += 1;
            }
        }
    }
    out
}

/// A testapp service with exactly these labels (plus this stack's cluster) and `extra` args.
fn labelled(env: &Env, net: &Network, replicas: u32, labels: &[String], extra: &[&str]) -> Service {
    let name = unique("svc");
    let cluster = format!("com.docker.lb.service_cluster={}", env.cluster);
    let replicas = replicas.to_string();
    let mut args: Vec<&str> = vec!["--network", &net.name, "--replicas", &replicas];
    for l in labels.iter().chain([&cluster]) {
        args.extend(["--label", l.as_str()]);
    }
    args.extend_from_slice(extra);
    Service::create(&name, APP1, &args)
}

/// Issue 9: v1 with 4 replicas and v2 with 1 on one host give v2 about 20 % of 400 requests;
/// promoting v2 (scale it up, v1 to 0) under load fails nothing and reloads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_sharing_a_host_takes_its_share_by_replicas_and_promotion_under_load_fails_nothing(
) {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("canary");
    let v1 = env.service(&net, &h, 4, &[]);
    env.converged(&v1, &net, 4).await;
    let v2 = env.service(&net, &h, 1, &[]);
    env.converged(&v2, &net, 1).await;
    poll_until(CONVERGE, "the route split 80/20", || async {
        let b = buckets(&env, &format!("{h}/"));
        (b.get(&v1.name) == Some(&80) && b.get(&v2.name) == Some(&20)).then_some(())
    })
    .await;
    let mut by_service: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..400 {
        let (status, body) = load::get(env.stack.http_port, &h, "/").await.expect("GET");
        assert_eq!(status, 200, "{body}");
        let name = if body.contains(&format!("task={}.", v2.name)) {
            "v2"
        } else {
            "v1"
        };
        *by_service.entry(name).or_default() += 1;
    }
    let v2_share = 100.0 * by_service.get("v2").copied().unwrap_or(0) as f64 / 400.0;
    println!("canary 4 + 1 replicas, 400 requests: {by_service:?} ({v2_share:.1} % to v2)");
    assert!((13.0..=27.0).contains(&v2_share), "{by_service:?}");

    // Promotion under load.
    let reloads = env.stack.reloads().await;
    let l = load(&env, &h);
    v2.scale(4);
    env.converged(&v2, &net, 4).await;
    v1.scale(0);
    poll_until(CONVERGE, "all traffic on v2", || async {
        let b = buckets(&env, &format!("{h}/"));
        (b.get(&v2.name) == Some(&100)).then_some(())
    })
    .await;
    env.converged(&v1, &net, 0).await;
    let summary = l.stop().await;
    println!("promotion under load: {summary}");
    assert_eq!(summary.failed(), 0, "{summary}");
    assert_eq!(
        env.stack.reloads().await,
        reloads,
        "promotion reloads nothing"
    );
}

/// Issue 9, vip mode: each claimant is one server (its VIP), so 4 + 1 replicas split 50/50.
/// This kernel has no IPVS: the control plane is checked, not traffic through the VIPs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_claimants_of_one_host_count_once_each_so_four_and_one_replicas_split_evenly() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("vipcanary");
    let vip = ["--label", "com.docker.lb.backend_mode=vip"];
    let v1 = env.service(&net, &h, 4, &vip);
    let v2 = env.service(&net, &h, 1, &vip);
    for svc in [&v1, &v2] {
        let addr = poll_until(CONVERGE, "the service's VIP", || async { svc.vip(&net.id) }).await;
        poll_until(CONVERGE, "its vip server ready at the VIP", || async {
            let rows = env.stack.servers(&svc.name).await;
            (rows.len() == 1
                && rows[0].addr.to_string() == addr
                && admin_from_bits(rows[0].admin_state) == Admin::Ready)
                .then_some(())
        })
        .await;
    }
    poll_until(CONVERGE, "the route split 50/50", || async {
        let b = buckets(&env, &format!("{h}/"));
        (b.get(&v1.name) == Some(&50) && b.get(&v2.name) == Some(&50)).then_some(())
    })
    .await;
    println!(
        "SKIPPED data-path check through the VIPs: this kernel has no IPVS; the two vip servers \
         and the 50/50 buckets were checked"
    );
}

/// Issue 9: context roots (longest prefix, segment boundaries, rewrite) and redirects as an
/// operator sees them, each a map edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_roots_route_by_path_and_redirects_answer_with_the_rest_of_the_path() {
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("shop");
    let old = host("old");
    let echo = ["--env", "ECHO_PATHS=1"];
    let base = |extra: &[&str]| -> Vec<String> {
        let mut l = vec![
            format!("com.docker.lb.hosts={h}"),
            "com.docker.lb.port=8080".to_owned(),
        ];
        l.extend(extra.iter().map(|s| s.to_string()));
        l
    };
    let site = labelled(&env, &net, 1, &base(&[]), &echo);
    let api = labelled(
        &env,
        &net,
        1,
        &base(&["com.docker.lb.context_root=/api"]),
        &echo,
    );
    let apiv2 = labelled(
        &env,
        &net,
        1,
        &base(&[
            "com.docker.lb.context_root=/api/v2",
            "com.docker.lb.context_root_rewrite=true",
        ]),
        &echo,
    );
    for svc in [&site, &api, &apiv2] {
        env.converged(svc, &net, 1).await;
    }
    let reloads = env.stack.reloads().await;
    let port = env.stack.http_port;
    for (target, svc, seen) in [
        ("/x", &site, "/x"),
        ("/apple", &site, "/apple"),
        ("/api", &api, "/api"),
        ("/api/x?q=1", &api, "/api/x?q=1"),
        ("/api/v20", &api, "/api/v20"),
        ("/api/v2", &apiv2, "/"),
        ("/api/v2/orders/7?q=1", &apiv2, "/orders/7?q=1"),
    ] {
        let body = poll_until(
            CONVERGE,
            &format!("{target} routed to {}", svc.name),
            || async {
                let (status, body) = load::get(port, &h, target).await.ok()?;
                (status == 200 && body.contains(&format!("task={}.", svc.name))).then_some(body)
            },
        )
        .await;
        assert!(body.contains(&format!("path={seen}\n")), "{target}: {body}");
    }

    // Redirects, added by a label edit (a map edit), checked with curl as an operator would.
    site.update(&[
        "--label-add",
        &format!(
            "com.docker.lb.redirects=http://{old},http://{h}; http://{h}/legacy,https://{h}/v2"
        ),
    ]);
    for (host, target, location) in [
        (old.as_str(), "/a/b?q=1", format!("http://{h}/a/b?q=1")),
        (h.as_str(), "/legacy/x?y=2", format!("https://{h}/v2/x?y=2")),
    ] {
        let url = format!("http://127.0.0.1:{port}{target}");
        let head = poll_until(CONVERGE, &format!("{host}{target} redirected"), || async {
            let out = std::process::Command::new("curl")
                .args(["-sI", "-H", &format!("Host: {host}"), &url])
                .output()
                .ok()?;
            let head = String::from_utf8_lossy(&out.stdout).into_owned();
            head.starts_with("HTTP/1.1 302").then_some(head)
        })
        .await;
        let got = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .map(str::trim);
        assert_eq!(got, Some(location.as_str()), "{head}");
        println!("curl -sI -H 'Host: {host}' {url}: 302 -> {location}");
    }
    assert_eq!(
        env.stack.reloads().await,
        reloads,
        "paths and redirects are map edits"
    );
}

/// Issue 9: max_fails/fail_timeout. One task starts answering 500 under load: it leaves
/// rotation after max_fails answers, and comes back within fail_timeout once it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_starts_failing_leaves_rotation_after_max_fails_and_returns_after_it_recovers()
{
    let env = Env::up().await;
    let net = Network::create(&unique("net"));
    let h = host("fails");
    let svc = env.service(
        &net,
        &h,
        3,
        &[
            "--label",
            "com.docker.lb.max_fails=2",
            "--label",
            "com.docker.lb.fail_timeout=2s",
        ],
    );
    env.converged(&svc, &net, 3).await;
    env.all_answer(&h, 3).await;
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
    let bad_task = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"com.docker.swarm.task.name\"}}",
        &container,
    ])
    .trim()
    .to_owned();

    docker(&["exec", &container, "/usr/local/bin/testapp", "fail", "on"]);
    let l = load(&env, &h);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = l.stop().await;
    println!("3 s of load while {bad_task} fails: {during}");
    // Each time HAProxy lets the task in (at first, then after each fail_timeout of 2 s),
    // it fails max_fails=2 requests in a row, plus at most the load's 4 requests already in
    // flight to it: 2 windows in 3 s.
    let fails = during.bad_status.get(&500).copied().unwrap_or(0);
    assert!(
        (2..=2 * (2 + 4)).contains(&fails),
        "max_fails=2 answers of 500 (plus those in flight) per 2 s, then out: {during}"
    );
    assert!(during.ok > 50, "{during}");

    docker(&["exec", &container, "/usr/local/bin/testapp", "fail", "off"]);
    let started = std::time::Instant::now();
    poll_until(
        Duration::from_secs(10),
        "the recovered task back in rotation",
        || async {
            let (status, body) = load::get(env.stack.http_port, &h, "/").await.ok()?;
            (status == 200 && body.contains(&format!("task={bad_task}\n"))).then_some(())
        },
    )
    .await;
    println!(
        "{bad_task} back in rotation {:?} after recovering",
        started.elapsed()
    );
}

/// Open a websocket to `host`'s `/ws` through HAProxy and check one echo.
async fn open_websocket(
    port: u16,
    host: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to HAProxy");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{host}/ws").as_str(), stream)
        .await
        .expect("websocket handshake through HAProxy");
    assert!(
        echoes(&mut ws, "hello").await,
        "no echo on a fresh websocket"
    );
    ws
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A service of 2 tasks with a `/ws` websocket endpoint routed at `host`, both tasks
/// answering, and `n` websockets held open to it through HAProxy.
async fn websocket_service(env: &Env, net: &Network, host: &str, n: usize) -> (Service, Vec<Ws>) {
    let svc = env.service(
        net,
        host,
        2,
        &["--label", "com.docker.lb.websocket_endpoints=/ws"],
    );
    env.converged(&svc, net, 2).await;
    env.all_answer(host, 2).await;
    let mut sockets = Vec::new();
    for _ in 0..n {
        sockets.push(open_websocket(env.stack.http_port, host).await);
    }
    (svc, sockets)
}

/// How many of `sockets` no longer echo (cut).
async fn cut(sockets: &mut [Ws]) -> usize {
    let mut cut = 0;
    for ws in sockets {
        if !echoes(ws, "still there").await {
            cut += 1;
        }
    }
    cut
}

/// Whether `ws` echoes `text` within 5 s (false: the socket was cut).
async fn echoes(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    text: &str,
) -> bool {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    if ws.send(Message::Text(text.into())).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await,
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text
    )
}

/// Issue 10's scenario. From 3.4: 0 reloads, 0 websockets cut, 0 failed requests, and only
/// the master and one worker at the end. Before 3.4 (2.6 in CI): the create and the remove
/// are one reload each, the 20 websockets stay open on the worker they started on (a reload
/// hands new connections to a new worker, never cuts established ones), which therefore
/// stays alive as an old worker beside the new one: 3 processes or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_removing_a_routed_service_cuts_none_of_20_held_websockets_and_from_3_4_reloads_nothing(
) {
    let env = Env::up().await;
    let per = env.stack.reloads_per_backend().await;
    let net = Network::create(&unique("net"));
    let steady = host("ws");
    let (_svc, mut sockets) = websocket_service(&env, &net, &steady, 20).await;
    let l = load(&env, &steady);
    let r0 = env.stack.reloads().await;

    let other_host = host("churn");
    let other = env.service(&net, &other_host, 1, &[]);
    env.converged(&other, &net, 1).await;
    env.all_answer(&other_host, 1).await;
    let other_name = other.name.clone();
    drop(other);
    poll_until(CONVERGE, "the removed service's backend to go", || async {
        env.stack
            .servers(&other_name)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(env.status(&other_host).await, 503);
    let reloads = env.stack.reloads().await - r0;

    let cut = cut(&mut sockets).await;
    let summary = l.stop().await;
    let procs = env.stack.master().show_proc().await.expect("show proc");
    let processes = 1 + procs.workers.len() + procs.old_workers.len();
    println!(
        "HAProxy (reloads per backend {per}): reloads {reloads}, websockets cut {cut}/20, \
         processes {processes}, steady service: {summary}"
    );
    assert_eq!(
        reloads,
        2 * per,
        "one reload each for create and remove before 3.4"
    );
    assert_eq!(cut, 0, "websockets cut");
    assert_eq!(summary.failed(), 0, "{summary}");
    assert!(summary.ok > 100, "{summary}");
    if per == 0 {
        assert_eq!(processes, 2, "master + one worker: {procs:?}");
    } else {
        assert!(
            processes >= 3,
            "the worker holding the websockets lives on as an old worker: {procs:?}"
        );
    }
}

/// Issue 10: a service's options change while websockets to it are held. From 3.4 the
/// service moves to a new backend generation with no reload, the held websockets stay on the
/// old one (its retirement waits for them) and none is cut; new requests never fail; once the
/// websockets close, the old generation is deleted. Before 3.4: one reload, and the websockets
/// stay on the old worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_services_options_cuts_none_of_its_held_websockets_and_from_3_4_reloads_nothing()
{
    let env = Env::up().await;
    let per = env.stack.reloads_per_backend().await;
    let net = Network::create(&unique("net"));
    let h = host("wsopt");
    let (svc, mut sockets) = websocket_service(&env, &net, &h, 10).await;
    let l = load(&env, &h);
    let r0 = env.stack.reloads().await;

    svc.update(&["--label-add", "com.docker.lb.ip_hash=true"]);
    let generation = format!("{}:2", svc.name);
    poll_until(CONVERGE, "ip_hash applied", || async {
        let applied = match per {
            0 => hosts_map(&env)
                .iter()
                .any(|l| l.ends_with(&format!(" {generation}"))),
            _ => env.stack.reloads().await > r0,
        };
        applied.then_some(())
    })
    .await;
    let cut = cut(&mut sockets).await;
    let summary = l.stop().await;
    let reloads = env.stack.reloads().await - r0;
    let names = env.stack.backend_names().await;
    println!(
        "options change under 10 websockets (reloads per backend {per}): reloads {reloads}, \
         websockets cut {cut}/10, backends {names:?}, load: {summary}"
    );
    assert_eq!(reloads, per, "one reload before 3.4, none from 3.4");
    assert_eq!(cut, 0, "websockets cut");
    assert_eq!(summary.failed(), 0, "{summary}");
    assert!(summary.ok > 50, "{summary}");
    if per == 0 {
        assert!(names.contains(&generation), "the new generation: {names:?}");
        assert!(
            names.contains(&svc.name),
            "the old generation waits for its websockets: {names:?}"
        );
        // The websockets end: the old generation goes at a following pass.
        drop(sockets);
        let old = svc.name.clone();
        poll_until(CONVERGE, "the old generation deleted", || async {
            (!env.stack.backend_names().await.contains(&old)).then_some(())
        })
        .await;
        let procs = env.stack.master().show_proc().await.expect("show proc");
        assert_eq!(
            1 + procs.workers.len() + procs.old_workers.len(),
            2,
            "master + one worker: {procs:?}"
        );
        assert_eq!(env.stack.reloads().await - r0, 0, "still no reload");
    }
}
