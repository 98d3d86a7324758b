//! What an operator sees of swarm-lb on a real Swarm: its `/metrics` (scraped over the port the
//! compose file publishes on loopback, and checked by `promtool`), `swarm-lb status` run inside
//! its container against `show servers state` and the task list, and HAProxy's own exporter on
//! the stats port.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use swarm_lb::observe::{http, Status};
use swarm_lb_e2e::docker::{docker, Network, Service};
use swarm_lb_e2e::stack::Stack;
use swarm_lb_e2e::{poll_until, unique};

const APP: &str = "swarm-lb/testapp:1";
const CONVERGE: Duration = Duration::from_secs(90);

struct Env {
    stack: Stack,
    cluster: String,
}

impl Env {
    fn service(&self, net: &Network, host: &str, replicas: u32) -> Service {
        let name = unique("obs");
        Service::routed(&name, APP, &self.cluster, net, host, replicas, &[])
    }

    fn listener(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.stack.metrics_port))
    }

    /// `/metrics` as `name{labels}` -> value, or `None` while swarm-lb does not answer.
    async fn scrape(&self) -> Option<BTreeMap<String, f64>> {
        match http::get(self.listener(), "/metrics").await {
            Ok((200, text)) => Some(samples(&text)),
            _ => None,
        }
    }

    async fn metrics(&self) -> BTreeMap<String, f64> {
        poll_until(CONVERGE, "swarm-lb's /metrics", || self.scrape()).await
    }

    /// Wait until `ok` holds for a scrape, and return it.
    async fn metrics_until(
        &self,
        what: &str,
        ok: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        poll_until(CONVERGE, what, || async {
            self.scrape().await.filter(|m| ok(m))
        })
        .await
    }

    /// Wait until HAProxy's ready servers of `svc` are exactly its `n` running tasks.
    async fn converged(&self, svc: &Service, net: &Network, n: usize) -> Vec<String> {
        poll_until(CONVERGE, &format!("{} on {n} tasks", svc.name), || async {
            let tasks = svc.running_task_ips(&net.id);
            let ready = self.stack.ready_addrs(&svc.name).await;
            (tasks.len() == n && ready == tasks).then_some(ready)
        })
        .await
    }

    /// `swarm-lb status [args]` inside swarm-lb's container: the binary asks the daemon.
    fn status_cli(&self, args: &[&str]) -> String {
        let mut all = vec![
            "exec",
            &self.stack.swarm_lb_container,
            "/usr/local/bin/swarm-lb",
            "status",
        ];
        all.extend_from_slice(args);
        docker(&all)
    }
}

fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of every sample of metric `name` (all label sets).
fn sum(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool not found ({e}): install it with `apt-get install prometheus` \
                 (scripts/setup.sh does)"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const COMMANDS: &str = "swarm_lb_runtime_commands_total";
const RELOADS: &str = "swarm_lb_reloads_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_show_scaling_creation_and_a_hostile_label_as_they_happen() {
    let cluster = unique("c");
    // SWARM_LB_IMAGE picks another build of swarm-lb (the default is scripts/images.sh's).
    let image = swarm_lb_e2e::docker::swarm_lb_image();
    let stack = Stack::up(&[
        ("SWARM_LB_SERVICE_CLUSTER", cluster.as_str()),
        ("SWARM_LB_IMAGE", image.as_str()),
    ])
    .await;
    let env = Env { stack, cluster };
    let net = Network::create(&unique("net"));
    let host_a = format!("{}.test", unique("a"));
    let a = env.service(&net, &host_a, 2);
    env.converged(&a, &net, 2).await;
    poll_until(CONVERGE, "/readyz answering 200", || async {
        matches!(http::get(env.listener(), "/readyz").await, Ok((200, _))).then_some(())
    })
    .await;
    // The image carries a CA bundle (scripts/images.sh): ssl_backend_tls_verify=required and
    // the ACME client have a trust store, so no start-up warning says otherwise.
    let log = env.stack.swarm_lb_log();
    assert!(
        !log.contains("no CA bundle"),
        "the image has no CA bundle at /etc/ssl/certs/ca-certificates.crt: {log}"
    );

    // Scaling: runtime commands rise, reloads do not.
    let before = env.metrics().await;
    a.scale(4);
    env.converged(&a, &net, 4).await;
    let scaled = env
        .metrics_until("runtime commands counted for the scale", |m| {
            sum(m, COMMANDS) > sum(&before, COMMANDS)
        })
        .await;
    assert_eq!(
        sum(&scaled, RELOADS),
        sum(&before, RELOADS),
        "scaling reloaded"
    );
    let used = format!(
        "swarm_lb_backend_slots{{service=\"{0}\",backend=\"{0}\",state=\"used\"}}",
        a.name
    );
    assert_eq!(scaled.get(&used), Some(&4.0), "{scaled:#?}");

    // A new service: one reload, by reason, before 3.4; from 3.4 an `add_backend` command.
    let per = f64::from(env.stack.reloads_per_backend().await);
    let created = format!("{RELOADS}{{reason=\"backend_created\"}}");
    let added = "swarm_lb_runtime_commands_total{kind=\"add_backend\",result=\"ok\"}";
    let host_b = format!("{}.test", unique("b"));
    let b = env.service(&net, &host_b, 1);
    env.converged(&b, &net, 1).await;
    let after = env
        .metrics_until("a backend_created reload or add_backend", |m| {
            let got = |k: &str| m.get(k).copied().unwrap_or(0.0);
            let had = |k: &str| before.get(k).copied().unwrap_or(0.0);
            got(&created) > had(&created) || got(added) > had(added)
        })
        .await;
    assert_eq!(
        after.get(&created).copied().unwrap_or(0.0),
        before.get(&created).copied().unwrap_or(0.0) + per,
        "{after:#?}"
    );
    assert_eq!(sum(&after, RELOADS), sum(&before, RELOADS) + per);

    // A hostile label: its gauge is 1 while deployed, 0 once fixed.
    let gauge = format!(
        "swarm_lb_label_problems{{service=\"{}\",label=\"com.docker.lb.port\",severity=\"error\"}}",
        b.name
    );
    b.update(&["--label-add", "com.docker.lb.port=80;show info"]);
    env.metrics_until("the label problem gauge at 1", |m| {
        m.get(&gauge) == Some(&1.0)
    })
    .await;
    let status: Status = serde_json::from_str(&env.status_cli(&["--json"])).expect("status --json");
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.service == b.name && p.label == "com.docker.lb.port"),
        "{status:#?}"
    );
    b.update(&["--label-add", "com.docker.lb.port=8080"]);
    env.metrics_until("the label problem gauge back at 0", |m| {
        m.get(&gauge) == Some(&0.0)
    })
    .await;

    // swarm-lb status against show servers state and the task list.
    let status: Status = serde_json::from_str(&env.status_cli(&["--json"])).expect("status --json");
    let route = status
        .routes
        .iter()
        .find(|r| r.backend == a.name)
        .expect("service a in status");
    assert_eq!(route.hosts, vec![host_a.clone()]);
    assert_eq!(route.service, a.name);
    assert_eq!(route.mode, "task");
    let rows = env.stack.servers(&a.name).await;
    let used_rows: Vec<_> = rows.iter().filter(|r| r.port != 1).collect();
    assert_eq!(route.servers.len(), used_rows.len());
    assert_eq!(route.free_slots, rows.len() - used_rows.len());
    for (s, row) in route.servers.iter().zip(&used_rows) {
        assert_eq!(s.slot, row.server.as_str());
        assert_eq!(s.address, SocketAddr::new(row.addr, row.port).to_string());
    }
    let mut status_ips: Vec<String> = route
        .servers
        .iter()
        .filter(|s| s.state == "ready")
        .map(|s| s.address.rsplit_once(':').expect("ip:port").0.to_owned())
        .collect();
    status_ips.sort();
    assert_eq!(status_ips, a.running_task_ips(&net.id));
    for s in &route.servers {
        let task = s.task.as_deref().expect("every server names its task");
        assert!(task.starts_with(&format!("{}.", a.name)), "{task}");
    }
    let table = env.status_cli(&[]);
    assert!(
        table.contains(&host_a) && table.contains(&a.name),
        "{table}"
    );

    // promtool accepts the whole scrape; HAProxy's own exporter answers on the stats port.
    let (_, text) = http::get(env.listener(), "/metrics")
        .await
        .expect("metrics");
    promtool_check(&text);
    let stats = SocketAddr::from(([127, 0, 0, 1], env.stack.stats_port));
    let (code, haproxy) = http::get(stats, "/metrics")
        .await
        .expect("haproxy exporter");
    assert_eq!(code, 200);
    assert!(
        haproxy.contains(&format!("haproxy_backend_status{{proxy=\"{}\"", a.name)),
        "HAProxy's exporter lacks backend {}",
        a.name
    );
    // ... but not to a task on a routed overlay network, which HAProxy has joined.
    let from_overlay = swarm_lb_e2e::docker::try_docker(&[
        "run",
        "--rm",
        "--network",
        &net.name,
        "swarm-lb/busybox:local",
        "wget",
        "-q",
        "-T",
        "5",
        "-O-",
        &format!("http://{}:8405/metrics", env.stack.haproxy_container),
    ]);
    // Refused by HAProxy (connection closed), not lost on the way (name not found, no image).
    match from_overlay {
        Ok(scrape) => panic!(
            "a container on overlay network {} read HAProxy's exporter: {scrape:.200}",
            net.name
        ),
        Err(e) => assert!(
            !e.contains("bad address") && !e.contains("Unable to find image"),
            "the probe did not reach HAProxy: {e}"
        ),
    }
}
