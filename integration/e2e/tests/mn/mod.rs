//! What the multi-node suites share (`multinode.rs`: edges deployed with the CLI; `stack.rs`:
//! `docker-stack.yml` deployed from the cluster's registry): the nodes' engines, traffic from
//! the switch namespace (`ip netns exec mn-sw netclient ...`), each edge's HAProxy read through
//! its node's volume directory, routed test services, load and watches.
#![allow(dead_code)] // each suite uses its own part

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use swarm_lb::haproxy::codec::{self, ServerRow};
use swarm_lb::haproxy::{Admin, AdminClient, Master};
use swarm_lb_e2e::{poll_until, unique};

pub const NODES: [&str; 3] = ["mn1", "mn2", "mn3"];
pub const APP: &str = "swarm-lb/testapp:1";
pub const CONVERGE: Duration = Duration::from_secs(90);

pub fn base() -> PathBuf {
    PathBuf::from(std::env::var("MN_BASE").unwrap_or_else(|_| "/tmp/multinode".into()))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn node_ip(node: &str) -> String {
    format!("10.213.0.1{}", node.trim_start_matches("mn"))
}

/// `docker` against one node's engine; stdout, or the command and its stderr.
pub fn try_mn(node: &str, args: &[&str]) -> Result<String, String> {
    let sock = format!("unix://{}/{node}/docker.sock", base().display());
    swarm_lb_e2e::docker::try_docker_on(Some(&sock), args)
}

pub fn mn(node: &str, args: &[&str]) -> String {
    try_mn(node, args).unwrap_or_else(|e| panic!("{e}"))
}

/// The full ids of `service`'s tasks whose desired state is running (the task list also keeps
/// stopped ones, with addresses gone), as the manager mn1 lists them.
pub fn running_task_ids(service: &str) -> Vec<String> {
    let args = [
        "service",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        service,
    ];
    mn("mn1", &args)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// [`mn`] for an update of a Swarm object, tried again (up to 10 times, 300 ms apart) while the
/// manager answers `update out of sequence`: the object's version moved between the CLI's read
/// and its update (a node's status changing as its edge is killed, seen in CI).
pub fn mn_update(node: &str, args: &[&str]) -> String {
    for _ in 0..9 {
        match try_mn(node, args) {
            Err(e) if e.contains("update out of sequence") => {
                std::thread::sleep(std::time::Duration::from_millis(300))
            }
            other => return other.unwrap_or_else(|e| panic!("{e}")),
        }
    }
    mn(node, args)
}

/// The netclient binary run inside the switch namespace.
pub fn netclient(args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", "mn-sw", env!("CARGO_BIN_EXE_netclient")])
        .args(args);
    c
}

/// One GET through `node`'s edge: the JSON reply, or why not.
pub fn get(node: &str, host: &str, cookie: Option<&str>) -> Result<Value, String> {
    let addr = format!("{}:80", node_ip(node));
    let mut args = vec!["get", addr.as_str(), host];
    if let Some(c) = cookie {
        args.push(c);
    }
    let out = netclient(&args).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

pub fn task_of(reply: &Value) -> String {
    reply["body"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("task="))
        .unwrap_or_default()
        .to_owned()
}

/// One edge: the HAProxy and swarm-lb pair on `node`, its sockets seen through the node's
/// volume directory.
pub struct Edge {
    pub node: &'static str,
}

impl Edge {
    pub fn run_dir(&self) -> PathBuf {
        base()
            .join(self.node)
            .join("data/volumes/swarm-lb-run/_data")
    }

    pub async fn servers(&self, backend: &str) -> Option<Vec<ServerRow>> {
        let mut rt = AdminClient::new(self.run_dir().join("admin.sock"));
        let mut replies = rt
            .query(&[swarm_lb::haproxy::Query::ShowServersState { backend: None }])
            .await
            .ok()?;
        let text = replies.pop()?.ok()?;
        Some(
            codec::parse_servers_state(&text)
                .ok()?
                .into_iter()
                .filter(|r| r.backend.as_str() == backend)
                .collect(),
        )
    }

    /// Addresses of `backend`'s servers that take traffic, sorted.
    pub async fn ready(&self, backend: &str) -> BTreeSet<String> {
        self.servers(backend)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| codec::admin_from_bits(r.admin_state) == Admin::Ready)
            .map(|r| r.addr.to_string())
            .collect()
    }

    /// The tasks answering `host` through this edge once `n` distinct ones have answered
    /// within 30 requests in a row, each 200 (polled until [`CONVERGE`]).
    pub async fn tasks_answering(&self, host: &str, n: usize) -> BTreeSet<String> {
        poll_until(
            CONVERGE,
            &format!("all {n} tasks answering through {}", self.node),
            || async {
                let mut seen = BTreeSet::new();
                for _ in 0..30 {
                    let r = get(self.node, host, None).ok()?;
                    if r["status"] != 200 {
                        return None;
                    }
                    seen.insert(task_of(&r));
                    if seen.len() == n {
                        return Some(seen);
                    }
                }
                None
            },
        )
        .await
    }

    /// The master's reload counter since HAProxy started.
    pub async fn reloads(&self) -> u32 {
        let master = Master::new(self.run_dir().join("master.sock"));
        poll_until(
            Duration::from_secs(20),
            &format!("{}: show proc", self.node),
            || {
                let m = &master;
                async move { m.show_proc().await.ok().map(|p| p.master.reloads) }
            },
        )
        .await
    }
}

pub fn edges() -> [Edge; 3] {
    NODES.map(|node| Edge { node })
}

/// The container of `svc`'s task on `node` (the first, if several).
pub fn container_on(node: &str, svc: &str) -> String {
    let filter = format!("label=com.docker.swarm.service.name={svc}");
    mn(node, &["ps", "-q", "--filter", &filter])
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no container of {svc} on {node}"))
        .to_owned()
}

/// What each edge serves for a host, as it changes: `netclient watch` in the switch namespace,
/// one GET per edge every few ms; lines read on a thread.
pub struct Watch {
    child: Child,
    pub lines: std::sync::mpsc::Receiver<(String, u64, String, SystemTime)>,
}

impl Watch {
    pub fn start(host: &str) -> Watch {
        let addrs: Vec<String> = NODES.iter().map(|n| format!("{}:80", node_ip(n))).collect();
        let mut args = vec!["watch", host, "5"];
        args.extend(addrs.iter().map(String::as_str));
        let mut child = netclient(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("netclient watch");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let ns: u64 = v["unix_ns"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let at = std::time::UNIX_EPOCH + Duration::from_nanos(ns);
                let addr = v["addr"].as_str().unwrap_or_default();
                let node = NODES
                    .iter()
                    .find(|n| addr.starts_with(&node_ip(n)))
                    .map_or(String::new(), |n| n.to_string());
                let sent = (
                    node,
                    v["status"].as_u64().unwrap_or(0),
                    v["task"].as_str().unwrap_or_default().to_owned(),
                    at,
                );
                if tx.send(sent).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// Waits until every edge serves a task other than those in `not` (200): when, per node.
    pub fn until_served(
        &self,
        not: &BTreeSet<String>,
        within: Duration,
    ) -> BTreeMap<String, (String, SystemTime)> {
        let deadline = std::time::Instant::now() + within;
        let mut seen: BTreeMap<String, (String, SystemTime)> = BTreeMap::new();
        let mut last: BTreeMap<String, (u64, String)> = BTreeMap::new();
        while seen.len() < NODES.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok((node, status, task, at)) = self.lines.recv_timeout(left) else {
                panic!(
                    "not every edge served a new task within {within:?}: {seen:?}, last {last:?}"
                );
            };
            last.insert(node.clone(), (status, task.clone()));
            if status == 200 && !task.is_empty() && !not.contains(&task) {
                seen.entry(node).or_insert((task, at));
            } else {
                seen.remove(&node);
            }
        }
        seen
    }

    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `rounds` crashes (`docker kill` on mn3) of `svc`'s one task, pinned to mn3: per round, the
/// ms from the kill to each edge serving the replacement (mn1, mn2, mn3).
pub fn crash_rounds(svc: &Svc, rounds: usize) -> Vec<[f64; 3]> {
    let watch = Watch::start(&svc.host);
    let mut out = Vec::new();
    let mut old = watch.until_served(&BTreeSet::new(), CONVERGE);
    for round in 0..rounds {
        let tasks: BTreeSet<String> = old.values().map(|(t, _)| t.clone()).collect();
        assert_eq!(
            tasks.len(),
            1,
            "round {round}: edges serve different tasks: {old:?}"
        );
        let id = container_on("mn3", &svc.name);
        // Drain what the watch saw before the kill.
        while watch.lines.try_recv().is_ok() {}
        let killed = SystemTime::now();
        mn("mn3", &["kill", &id]);
        let new = watch.until_served(&tasks, Duration::from_secs(90));
        let after = |n: &str| ms(new[n].1.duration_since(killed).unwrap_or(Duration::ZERO));
        let r = [after("mn1"), after("mn2"), after("mn3")];
        println!("  crash round {round}: served the replacement after mn1 {:.0} ms, mn2 {:.0} ms, mn3 (its node) {:.0} ms", r[0], r[1], r[2]);
        out.push(r);
        old = new;
    }
    watch.stop();
    out
}

pub fn summary(v: &[f64]) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    format!(
        "n={} p50={:.0} ms p99={:.0} ms max={:.0} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or_default()
    )
}

/// A routed testapp service on a fresh attachable overlay; removed (with its network) on drop.
pub struct Svc {
    pub name: String,
    pub host: String,
    pub net: String,
}

impl Svc {
    pub fn create(replicas: u32, extra: &[&str]) -> Svc {
        Svc::create_from(APP, replicas, extra)
    }

    /// The same with another image (e.g. the testapp pulled from the cluster's registry).
    pub fn create_from(image: &str, replicas: u32, extra: &[&str]) -> Svc {
        Svc::create_on(image, replicas, extra, &[])
    }

    /// The same on a network created with `network_opts` too (e.g. a small `--subnet`).
    pub fn create_on(image: &str, replicas: u32, extra: &[&str], network_opts: &[&str]) -> Svc {
        let name = unique("mnsvc");
        let net = unique("mnnet");
        let mut create = vec!["network", "create", "-d", "overlay", "--attachable"];
        create.extend_from_slice(network_opts);
        create.push(&net);
        mn("mn1", &create);
        let host = format!("{name}.test");
        let replicas = replicas.to_string();
        let hosts = format!("com.docker.lb.hosts={host}");
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--quiet",
            "--no-resolve-image",
            "--name",
            &name,
            "--network",
            &net,
            "--replicas",
            &replicas,
            "--env",
            "TASK_NAME={{.Task.Name}}",
            "--stop-grace-period",
            "20s",
            "--label",
            &hosts,
            "--label",
            "com.docker.lb.port=8080",
        ];
        args.extend_from_slice(extra);
        args.push(image);
        mn("mn1", &args);
        Svc { name, host, net }
    }

    pub fn scale(&self, n: u32) {
        mn(
            "mn1",
            &[
                "service",
                "scale",
                "--detach",
                &format!("{}={n}", self.name),
            ],
        );
    }

    /// Tasks Swarm reports running with desired state running: address -> (node, running since).
    pub fn running(&self) -> BTreeMap<String, (String, Option<SystemTime>)> {
        let nodes: BTreeMap<String, String> =
            mn("mn1", &["node", "ls", "--format", "{{.ID}} {{.Hostname}}"])
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(id, h)| (id.to_owned(), h.to_owned()))
                .collect();
        let ids = running_task_ids(&self.name);
        let mut out = BTreeMap::new();
        if ids.is_empty() {
            return out;
        }
        let mut args = vec!["inspect"];
        args.extend(ids.iter().map(String::as_str));
        let Ok(json) = try_mn("mn1", &args) else {
            return out;
        };
        let tasks: Vec<Value> = serde_json::from_str(&json).unwrap_or_default();
        for t in tasks {
            if t["Status"]["State"] != "running" || t["DesiredState"] != "running" {
                continue;
            }
            let node = nodes
                .get(t["NodeID"].as_str().unwrap_or_default())
                .cloned()
                .unwrap_or_default();
            let since = t["Status"]["Timestamp"]
                .as_str()
                .and_then(swarm_lb::swarm::rfc3339);
            for att in t["NetworksAttachments"].as_array().into_iter().flatten() {
                if att["Network"]["Spec"]["Name"] != self.net.as_str() {
                    continue;
                }
                for a in att["Addresses"].as_array().into_iter().flatten() {
                    if let Some(ip) = a.as_str().and_then(|a| a.split('/').next()) {
                        out.insert(ip.to_owned(), (node.clone(), since));
                    }
                }
            }
        }
        out
    }

    /// Waits until Swarm runs `n` tasks and every edge in `on` serves exactly them.
    pub async fn converged(&self, on: &[Edge], n: usize) -> BTreeSet<String> {
        poll_until(
            CONVERGE,
            &format!("{} on {n} tasks through every edge", self.name),
            || async {
                let tasks: BTreeSet<String> = self.running().into_keys().collect();
                if tasks.len() != n {
                    return None;
                }
                for e in on {
                    if e.ready(&self.name).await != tasks {
                        return None;
                    }
                }
                Some(tasks)
            },
        )
        .await
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        let _ = try_mn("mn1", &["service", "rm", &self.name]);
        // The edges detach from the network once nothing routed uses it; removal may have to
        // wait for that and for the tasks to go.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while try_mn("mn1", &["network", "rm", &self.net]).is_err()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Load from the switch namespace on the given edges, until stopped.
pub struct Load {
    child: Child,
}

impl Load {
    pub fn start(host: &str, on: &[&str]) -> Load {
        let addrs: Vec<String> = on.iter().map(|n| format!("{}:80", node_ip(n))).collect();
        let mut args = vec!["load", host, "20", "2"];
        args.extend(addrs.iter().map(String::as_str));
        let child = netclient(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("netclient load");
        Load { child }
    }

    /// Per edge address: (ok, failed, the whole summary line).
    pub fn stop(mut self) -> Vec<(u64, u64, Value)> {
        drop(self.child.stdin.take());
        let out = self
            .child
            .wait_with_output()
            .expect("netclient load output");
        assert!(out.status.success(), "netclient load failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("netclient JSON");
                let failed = v["errors"].as_u64().unwrap_or(0)
                    + v["bad_status"]
                        .as_object()
                        .map(|m| m.values().filter_map(Value::as_u64).sum())
                        .unwrap_or(0);
                (v["ok"].as_u64().unwrap_or(0), failed, v)
            })
            .collect()
    }
}

pub fn assert_no_failures(summaries: &[(u64, u64, Value)], what: &str) {
    assert!(!summaries.is_empty(), "{what}: no load summary");
    for (ok, failed, v) in summaries {
        assert!(*ok > 0, "{what}: nothing answered: {v}");
        assert_eq!(*failed, 0, "{what}: failed requests: {v}");
    }
}

pub async fn reloads(on: &[Edge]) -> Vec<u32> {
    let mut r = Vec::new();
    for e in on {
        r.push(e.reloads().await);
    }
    r
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The first container on `node` matching `filter` (a `docker ps --filter`).
pub fn container_on_filter(node: &str, filter: &str) -> String {
    mn(node, &["ps", "-q", "--filter", filter])
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no container {filter} on {node}"))
        .to_owned()
}
