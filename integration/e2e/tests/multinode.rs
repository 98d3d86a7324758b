//! swarm-lb on a real 3-node Swarm (one machine, three dockerds in network namespaces:
//! `scripts/multinode.sh`), edges on all three nodes: swarm-lb runs as a global Swarm service
//! (`--haproxy-create`: each creates or adopts the plain HAProxy container on its node), reads
//! Swarm state from the manager (`--manager`) and its node's container events locally. Traffic
//! comes from the switch namespace (`ip netns exec mn-sw netclient ...`), the only place that
//! reaches the nodes' addresses; each edge's sockets are read from the host through its node's
//! volume directory.
//!
//! The tests share the cluster and run one at a time (a lock): a new routed service reloads
//! every edge, which would spoil another test's zero-reload count. `scripts/test.sh` runs them
//! and then `scripts/multinode.sh down`.

mod mn;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, SystemTime};

use mn::*;
use serde_json::Value;
use swarm_lb_e2e::{poll_until, unique};
/// The global service that runs swarm-lb on every edge.
const SWARM_LB: &str = "swarm-lb";
/// The global service that runs `swarm-lb agent` on every node (node hints, issue 21).
const AGENT: &str = "swarm-lb-agent";
const AGENT_PORT: u16 = 9271;

static LOCK: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// The cluster up, the edges deployed and answering. Held for the whole test.
async fn cluster() -> tokio::sync::MutexGuard<'static, bool> {
    let mut ready = LOCK.lock().await;
    if !*ready {
        let script = repo().join("scripts/multinode.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("up")
            .output()
            .expect("running scripts/multinode.sh");
        assert!(
            out.status.success(),
            "the 3-node Swarm did not start: {}\n{}\nIt needs root and Debian's docker.io \
             (dockerd, containerd, runc) and iproute2: `bash scripts/setup.sh` installs them; \
             the images come from `bash scripts/images.sh` (see scripts/multinode/README.md)",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        deploy_edges();
        *ready = true;
    }
    for e in edges() {
        poll_until(
            CONVERGE,
            &format!("{}'s HAProxy answering", e.node),
            || async { get(e.node, "nobody.invalid", None).ok().map(drop) },
        )
        .await;
    }
    ready
}

/// swarm-lb as a global service on the edge nodes (label swarm-lb.edge=true), each creating its
/// node's HAProxy container; the manager's API reaches the workers as its socket (the nodes share
/// this machine's filesystem; a real deployment gives a TCP endpoint, see docs/several-nodes.md).
fn deploy_edges() {
    if try_mn("mn1", &["service", "inspect", SWARM_LB]).is_ok() {
        return;
    }
    let b = base().display().to_string();
    let haproxy = swarm_lb_e2e::docker::haproxy_image();
    let args: Vec<String> = [
        "service",
        "create",
        "--detach",
        "--quiet",
        "--no-resolve-image",
        "--name",
        SWARM_LB,
        "--mode",
        "global",
        "--constraint",
        "node.labels.swarm-lb.edge==true",
        "--network",
        "host",
        "--mount",
        &format!(
            "type=bind,source={b}/{{{{.Node.Hostname}}}}/docker.sock,target=/var/run/docker.sock"
        ),
        "--mount",
        &format!("type=bind,source={b}/mn1/docker.sock,target=/var/run/manager.sock"),
        "--mount",
        "type=volume,source=swarm-lb-run,target=/var/run/haproxy",
        "--mount",
        "type=volume,source=swarm-lb-config,target=/usr/local/etc/haproxy",
        "--env",
        "DOCKER_HOST=unix:///var/run/docker.sock",
        "--env",
        "SWARM_LB_MANAGER=unix:///var/run/manager.sock",
        "--env",
        "SWARM_LB_HAPROXY_CONTAINER=swarm-lb-haproxy",
        "--env",
        "SWARM_LB_HAPROXY_CREATE=true",
        "--env",
        &format!("SWARM_LB_HAPROXY_IMAGE={haproxy}"),
        "--env",
        "SWARM_LB_LISTEN=0.0.0.0:9270",
        "--env",
        &format!("SWARM_LB_HINTS={}", agent_addrs()),
        &swarm_lb_e2e::docker::swarm_lb_image(),
        "run",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    mn("mn1", &args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Where the agents listen. The test edges run on their node's host network (see
/// `deploy_edges`), so the agents do too and are named by node address; the stack puts both on
/// an encrypted internal overlay and names them `tasks.<agent service>`.
fn agent_addrs() -> String {
    NODES
        .iter()
        .map(|n| format!("{}:{AGENT_PORT}", node_ip(n)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `swarm-lb agent` on every node (`on`), or none; returns once every edge's hint streams
/// from the two other nodes are live (or all lost).
async fn agents(on: bool) {
    let exists = try_mn("mn1", &["service", "inspect", AGENT]).is_ok();
    if on && !exists {
        let b = base().display().to_string();
        mn(
            "mn1",
            &[
                "service",
                "create",
                "--detach",
                "--quiet",
                "--no-resolve-image",
                "--name",
                AGENT,
                "--mode",
                "global",
                "--network",
                "host",
                "--mount",
                &format!(
                    "type=bind,source={b}/{{{{.Node.Hostname}}}}/docker.sock,target=/var/run/docker.sock"
                ),
                "--env",
                "DOCKER_HOST=unix:///var/run/docker.sock",
                "--env",
                &format!("SWARM_LB_AGENT_LISTEN=0.0.0.0:{AGENT_PORT}"),
                &swarm_lb_e2e::docker::swarm_lb_image(),
                "agent",
            ],
        );
    }
    if !on && exists {
        mn("mn1", &["service", "rm", AGENT]);
    }
    let want = if on { 2 } else { 0 };
    for node in NODES {
        poll_until(
            CONVERGE,
            &format!("{node}'s edge with {want} live hint streams"),
            || async move { (hints_live(node) == Some(want)).then_some(()) },
        )
        .await;
    }
}

/// How many hint streams `node`'s edge has live (`swarm-lb status --json` in its container).
fn hints_live(node: &str) -> Option<usize> {
    let filter = format!("label=com.docker.swarm.service.name={SWARM_LB}");
    let id = try_mn(node, &["ps", "-q", "--filter", &filter]).ok()?;
    let id = id.lines().next()?.to_owned();
    let out = try_mn(
        node,
        &["exec", &id, "/usr/local/bin/swarm-lb", "status", "--json"],
    )
    .ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    Some(
        v["hints"]
            .as_array()
            .map_or(0, |h| h.iter().filter(|s| s["live"] == true).count()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_on_every_node_answers_through_every_edge() {
    let _c = cluster().await;
    let svc = Svc::create(6, &[]);
    let all = edges();
    let tasks = svc.converged(&all, 6).await;
    let nodes: BTreeSet<String> = svc.running().into_values().map(|(n, _)| n).collect();
    assert_eq!(nodes.len(), 3, "tasks not on all three nodes: {nodes:?}");
    for e in &all {
        let seen = e.tasks_answering(&svc.host, 6).await;
        assert_eq!(seen.len(), tasks.len(), "{}: {seen:?}", e.node);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_2_9_3_under_load_on_every_edge_fails_nothing_reloads_nothing_and_every_edge_holds_the_same_tasks(
) {
    let _c = cluster().await;
    let svc = Svc::create(2, &[]);
    let all = edges();
    svc.converged(&all, 2).await;
    let before = reloads(&all).await;
    let load = Load::start(&svc.host, &NODES);
    for n in [9, 3] {
        svc.scale(n);
        let tasks = svc.converged(&all, n as usize).await;
        for e in &all {
            assert_eq!(
                e.ready(&svc.name).await,
                tasks,
                "{} after scale {n}",
                e.node
            );
        }
    }
    let summaries = load.stop();
    println!("scale 2 -> 9 -> 3 under load: {summaries:?}");
    assert_no_failures(&summaries, "scale 2 -> 9 -> 3");
    assert_eq!(
        reloads(&all).await,
        before,
        "reloads per edge while scaling"
    );
}

/// 30 scale operations of +1 task: from the new task's running timestamp (Docker's) to its
/// address ready in each edge's HAProxy, split by whether the task runs on the edge's own node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_task_on_another_node_is_served_through_every_edge_within_a_second() {
    let _c = cluster().await;
    let svc = Svc::create(3, &[]);
    let all = edges();
    svc.converged(&all, 3).await;
    let before = reloads(&all).await;
    agents(true).await;
    let ops = 30u32;
    let with = scale_rounds(&svc, &all, 3, ops).await;
    // The same without the agents (same run), fewer rounds: a scale is a service event, which
    // every edge follows by listing, so the hints matter less here than for a crash.
    let ops_off: u32 = std::env::var("SWARM_LB_E2E_SCALE_OPS_OFF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    agents(false).await;
    let without = scale_rounds(&svc, &all, 3 + ops, ops_off).await;
    agents(true).await;
    for (mode, (local, remote)) in [("with hints", &with), ("without hints", &without)] {
        let mut all_remote: Vec<f64> = remote.values().flatten().copied().collect();
        all_remote.sort_by(f64::total_cmp);
        println!(
            "convergence over scale operations {mode}, task running (Docker) -> ready in each \
             edge's HAProxy: tasks on another node: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms; \
             on the edge's own node: n={} p50={:.1} ms p99={:.1} ms",
            all_remote.len(),
            percentile(&all_remote, 0.5),
            percentile(&all_remote, 0.99),
            all_remote.last().copied().unwrap_or_default(),
            local.len(),
            percentile(local, 0.5),
            percentile(local, 0.99),
        );
        for (edge, v) in remote {
            println!(
                "  edge {edge}: remote tasks n={} p50={:.1} ms p99={:.1} ms",
                v.len(),
                percentile(v, 0.5),
                percentile(v, 0.99)
            );
        }
        assert!(
            percentile(&all_remote, 0.5) < 1000.0,
            "remote convergence {mode} p50 {all_remote:?}"
        );
    }
    assert_eq!(reloads(&all).await, before, "reloads while scaling");
    svc.scale(3);
    svc.converged(&all, 3).await;
}

/// `ops` scale operations of +1 task from `from` tasks: for each new task, the time from its
/// running timestamp (Docker's) to its address ready in each edge's HAProxy, in ms, sorted:
/// the edges on its own node, and per edge those on another node.
async fn scale_rounds(
    svc: &Svc,
    all: &[Edge],
    from: u32,
    ops: u32,
) -> (Vec<f64>, BTreeMap<&'static str, Vec<f64>>) {
    let mut local: Vec<f64> = Vec::new();
    let mut remote: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for i in 0..ops {
        let old: BTreeSet<String> = svc.running().into_keys().collect();
        let want = from + 1 + i;
        svc.scale(want);
        // Poll every edge's servers until the new address is ready on all three.
        let mut seen: BTreeMap<&'static str, (String, SystemTime)> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + CONVERGE;
        while seen.len() < all.len() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "op {i}: the new task not on every edge: {seen:?}"
            );
            for e in all {
                if seen.contains_key(e.node) {
                    continue;
                }
                let ready = e.ready(&svc.name).await;
                let now = SystemTime::now();
                if let Some(new) = ready.difference(&old).next() {
                    seen.insert(e.node, (new.clone(), now));
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let running = poll_until(CONVERGE, "the new task's timestamp", || async {
            let r = svc.running();
            (r.len() == want as usize).then_some(r)
        })
        .await;
        for (edge, (addr, at)) in &seen {
            let Some((node, since)) = running.get(addr).cloned() else {
                panic!(
                    "op {i}: edge {edge} made {addr} ready, which is not a running task of \
                     {}: running {running:?}, before the scale {old:?}",
                    svc.name
                );
            };
            let since = since.expect("a running timestamp");
            let ms = at
                .duration_since(since)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
                * 1000.0;
            if node == *edge {
                local.push(ms);
            } else {
                remote.entry(*edge).or_default().push(ms);
            }
        }
    }
    local.sort_by(f64::total_cmp);
    for v in remote.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    assert_eq!(
        local.len() + remote.values().map(Vec::len).sum::<usize>(),
        all.len() * ops as usize
    );
    (local, remote)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_cookie_from_one_edge_pins_the_same_task_through_the_others() {
    let _c = cluster().await;
    let svc = Svc::create(3, &["--label", "com.docker.lb.sticky_session_cookie=sid"]);
    let all = edges();
    svc.converged(&all, 3).await;
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while cookies.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no cookie from every task through mn1: {cookies:?}"
        );
        let r = get("mn1", &svc.host, None).expect("GET through mn1");
        assert_eq!(r["status"], 200, "{r}");
        let set = r["set_cookie"].as_str().expect("a Set-Cookie").to_owned();
        let value = set
            .strip_prefix("sid=")
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .to_owned();
        cookies.insert(value, task_of(&r));
    }
    for (value, task) in &cookies {
        for node in NODES {
            for _ in 0..3 {
                let r = get(node, &svc.host, Some(&format!("sid={value}"))).expect("GET");
                assert_eq!(
                    (r["status"].as_u64(), task_of(&r)),
                    (Some(200), task.clone()),
                    "cookie {value} through {node}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_moves_its_tasks_every_other_edge_follows_and_nothing_fails_on_them() {
    let _c = cluster().await;
    let svc = Svc::create(6, &[]);
    let all = edges();
    svc.converged(&all, 6).await;
    let [e1, e2, e3] = edges();
    let others = [e1, e2];
    let before = reloads(&others).await;
    let started = || {
        mn(
            "mn3",
            &[
                "inspect",
                "--format",
                "{{.State.StartedAt}}",
                "swarm-lb-haproxy",
            ],
        )
    };
    let mn3_started = started();
    let load = Load::start(&svc.host, &["mn1", "mn2"]);
    mn("mn1", &["node", "update", "--availability", "drain", "mn3"]);
    let tasks = poll_until(
        CONVERGE,
        "mn3's tasks moved and mn1, mn2 following",
        || async {
            let r = svc.running();
            if r.len() != 6 || r.values().any(|(n, _)| n == "mn3") {
                return None;
            }
            let tasks: BTreeSet<String> = r.into_keys().collect();
            for e in &others {
                if e.ready(&svc.name).await != tasks {
                    return None;
                }
            }
            Some(tasks)
        },
    )
    .await;
    let summaries = load.stop();
    println!("drain mn3, load on mn1 and mn2: {summaries:?}");
    mn(
        "mn1",
        &["node", "update", "--availability", "active", "mn3"],
    );
    assert_no_failures(&summaries, "drain mn3");
    assert_eq!(reloads(&others).await, before, "reloads on mn1, mn2");
    // Swarm stops every task on a drained node, swarm-lb's too: mn3's HAProxy stays up on its
    // last state. Back to active, its swarm-lb returns and converges without a reload.
    let mn3_before = e3.reloads().await;
    poll_until(CONVERGE, "mn3's edge following again", || async {
        (e3.ready(&svc.name).await == tasks).then_some(())
    })
    .await;
    assert_eq!(e3.reloads().await, mn3_before, "reloads on mn3's return");
    // swarm-lb was stopped and started again: it adopted HAProxy, never restarted it.
    assert_eq!(
        started(),
        mn3_started,
        "mn3's HAProxy container was restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_edge_nodes_dockerd_stopped_the_others_keep_serving_and_converging_and_it_converges_on_return(
) {
    let _c = cluster().await;
    let svc = Svc::create(6, &[]);
    let all = edges();
    svc.converged(&all, 6).await;
    let [e1, e2, e3] = edges();
    let others = [e1, e2];
    let cluster_sh = repo().join("scripts/multinode/cluster.sh");
    let node_cmd = |what: &str| {
        let out = Command::new("bash")
            .arg(&cluster_sh)
            .args([what, "mn3"])
            .output()
            .expect("cluster.sh");
        assert!(out.status.success(), "cluster.sh {what} mn3: {out:?}");
    };
    let on_mn3: BTreeSet<String> = svc
        .running()
        .into_iter()
        .filter(|(_, (n, _))| n == "mn3")
        .map(|(a, _)| a)
        .collect();
    // When mn3's tasks are out of mn1's and mn2's HAProxy (before their replacements are in).
    let out_at: std::sync::Mutex<Option<f64>> = std::sync::Mutex::new(None);
    let outage = Load::start(&svc.host, &["mn1", "mn2"]);
    let t0 = std::time::Instant::now();
    node_cmd("stop-node");
    // Swarm marks the node down after missed heartbeats and starts its tasks elsewhere; the
    // other edges follow. A request already on its way to a task that vanished with the node
    // may fail until HAProxy's checks or swarm-lb take it out: the test asserts convergence,
    // then a clean window of load.
    let tasks = poll_until(
        Duration::from_secs(120),
        "mn3's tasks replaced and mn1, mn2 following",
        || async {
            if out_at.lock().expect("lock").is_none() {
                let mut out = true;
                for e in &others {
                    out &= e.ready(&svc.name).await.is_disjoint(&on_mn3);
                }
                if out {
                    *out_at.lock().expect("lock") = Some(t0.elapsed().as_secs_f64());
                }
            }
            let r = svc.running();
            if r.len() != 6 || r.values().any(|(n, _)| n == "mn3") {
                return None;
            }
            let tasks: BTreeSet<String> = r.into_keys().collect();
            for e in &others {
                if e.ready(&svc.name).await != tasks {
                    return None;
                }
            }
            Some(tasks)
        },
    )
    .await;
    let during = outage.stop();
    println!(
        "mn3 stopped: its {} tasks out of mn1's and mn2's HAProxy after {:?} s",
        on_mn3.len(),
        out_at.lock().expect("lock")
    );
    println!(
        "mn3 stopped: its tasks replaced and mn1, mn2 converged after {:.1} s; load on mn1 and \
         mn2 meanwhile (ok, failed): {:?}",
        t0.elapsed().as_secs_f64(),
        during
            .iter()
            .map(|(ok, failed, _)| (ok, failed))
            .collect::<Vec<_>>()
    );
    for (ok, failed, v) in &during {
        assert!(
            *ok > 10 * *failed,
            "mn1/mn2 stopped serving while mn3 was away: {v}"
        );
    }
    let load = Load::start(&svc.host, &["mn1", "mn2"]);
    svc.scale(8);
    let grown = svc.converged(&others, 8).await;
    let summaries = load.stop();
    println!("mn3 down, scale 6 -> 8, load on mn1 and mn2: {summaries:?}");
    assert_no_failures(&summaries, "mn3 down, scaling");
    assert!(grown.is_superset(&tasks), "{grown:?} {tasks:?}");

    node_cmd("start-node");
    let t1 = std::time::Instant::now();
    // Back: dockerd starts the HAProxy container again (restart policy) on its files, which
    // mirror what it held; Swarm starts swarm-lb's task again; the pair converges.
    poll_until(
        Duration::from_secs(120),
        "mn3's edge converged again",
        || async {
            let tasks: BTreeSet<String> = svc.running().into_keys().collect();
            (tasks.len() == 8 && e3.ready(&svc.name).await == tasks).then_some(())
        },
    )
    .await;
    println!(
        "mn3 back: its edge converged {:.1} s after its dockerd started",
        t1.elapsed().as_secs_f64()
    );
    assert_eq!(
        e3.reloads().await,
        0,
        "mn3's HAProxy reloaded after its return"
    );
    let r = get("mn3", &svc.host, None).expect("GET through mn3");
    assert_eq!(r["status"], 200, "{r}");
}

/// Issue 21's crash: a 1-replica service pinned to mn3, its container killed there (no service
/// change; Swarm restarts the task). With the agents on, mn3's agent streams the death and the
/// replacement's start to mn1's and mn2's edges. Then the same without the agents (the edges
/// fall back to the task list): both printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_task_on_another_node_is_replaced_on_every_edge_within_a_second_of_its_own_nodes_edge(
) {
    let _c = cluster().await;
    let svc = Svc::create(
        1,
        &[
            "--constraint",
            "node.hostname==mn3",
            "--restart-delay",
            "1s",
        ],
    );
    svc.converged(&edges(), 1).await;
    agents(true).await;
    let with = crash_rounds(&svc, 10);
    let rounds_off: usize = std::env::var("SWARM_LB_E2E_CRASH_ROUNDS_OFF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    agents(false).await;
    let without = crash_rounds(&svc, rounds_off);
    agents(true).await;
    let lag = |rounds: &[[f64; 3]]| -> Vec<f64> {
        rounds
            .iter()
            .flat_map(|r| [r[0] - r[2], r[1] - r[2]])
            .collect()
    };
    let remote =
        |rounds: &[[f64; 3]]| -> Vec<f64> { rounds.iter().flat_map(|r| [r[0], r[1]]).collect() };
    let local = |rounds: &[[f64; 3]]| -> Vec<f64> { rounds.iter().map(|r| r[2]).collect() };
    println!(
        "crash of a task on mn3 (restart delay 1 s), kill -> replacement served:\n  \
         with hints: mn3 (own node) {}; mn1+mn2 {}; mn1/mn2 behind mn3: {}\n  \
         without:    mn3 (own node) {}; mn1+mn2 {}; mn1/mn2 behind mn3: {}",
        summary(&local(&with)),
        summary(&remote(&with)),
        summary(&lag(&with)),
        summary(&local(&without)),
        summary(&remote(&without)),
        summary(&lag(&without)),
    );
    for (round, r) in with.iter().enumerate() {
        assert!(
            r[0] - r[2] <= 1000.0 && r[1] - r[2] <= 1000.0,
            "round {round}: an edge on another node served the replacement more than 1 s after \
             mn3's edge: {r:?}"
        );
    }
}

/// A task of a 3-replica service with restart policy none killed on its node: no replacement,
/// no service change. With the agents on it leaves every edge within a second, and the load on
/// all three edges meanwhile fails nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_killed_without_restart_leaves_every_edge_within_a_second_and_no_request_fails() {
    let _c = cluster().await;
    let svc = Svc::create(3, &["--restart-condition", "none"]);
    let all = edges();
    let tasks = svc.converged(&all, 3).await;
    agents(true).await;
    // The task on mn3 if there is one (mn1 is the manager: the hardest case is a worker).
    let running = svc.running();
    let node = ["mn3", "mn2", "mn1"]
        .into_iter()
        .find(|n| running.values().any(|(on, _)| on == n))
        .expect("a node with a task");
    let id = container_on(node, &svc.name);
    let format = format!(
        "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
        svc.net
    );
    let addr = mn(node, &["inspect", "--format", &format, &id]);
    assert!(tasks.contains(&addr), "{addr} not in {tasks:?}");
    let load = Load::start(&svc.host, &NODES);
    // Load running before the kill.
    poll_until(CONVERGE, "load answered", || async {
        get("mn1", &svc.host, None).ok().map(drop)
    })
    .await;
    let killed = std::time::Instant::now();
    mn(node, &["kill", &id]);
    let mut out: BTreeMap<&str, f64> = BTreeMap::new();
    let deadline = killed + Duration::from_secs(60);
    while out.len() < all.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} still in: {out:?}"
        );
        for e in &all {
            if !out.contains_key(e.node) && !e.ready(&svc.name).await.contains(&addr) {
                out.insert(e.node, ms(killed.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The load goes on a moment after the last edge took it out.
    let settled = std::time::Instant::now() + Duration::from_secs(1);
    poll_until(CONVERGE, "a second of load after", || async {
        (std::time::Instant::now() >= settled).then_some(())
    })
    .await;
    let summaries = load.stop();
    println!(
        "task on {node} killed (restart policy none): out of each edge after {out:?} ms; load: {:?}",
        summaries.iter().map(|(ok, failed, _)| (ok, failed)).collect::<Vec<_>>()
    );
    assert_no_failures(&summaries, "a task killed, no restart");
    for (edge, t) in &out {
        assert!(*t <= 1000.0, "{edge} took {addr} out after {t:.0} ms");
    }
}

/// The agent's cost on each node with 50 routed services idle (one task each, spread over the
/// nodes): CPU over 30 s and RSS, from /proc (the nodes share this machine's PID namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_costs_under_one_percent_of_a_core_with_fifty_idle_routed_services() {
    let _c = cluster().await;
    agents(true).await;
    let net = unique("mnidle");
    mn(
        "mn1",
        &["network", "create", "-d", "overlay", "--attachable", &net],
    );
    let names: Vec<String> = (0..50).map(|i| format!("{}-{i}", unique("idle"))).collect();
    for name in &names {
        let hosts = format!("com.docker.lb.hosts={name}.test");
        mn(
            "mn1",
            &[
                "service",
                "create",
                "--detach",
                "--quiet",
                "--no-resolve-image",
                "--name",
                name,
                "--network",
                &net,
                "--label",
                &hosts,
                "--label",
                "com.docker.lb.port=8080",
                APP,
            ],
        );
    }
    poll_until(Duration::from_secs(300), "50 services running", || async {
        let out = try_mn(
            "mn1",
            &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"],
        )
        .ok()?;
        let up = out
            .lines()
            .filter(|l| {
                names.iter().any(|n| l.starts_with(&format!("{n} "))) && l.ends_with(" 1/1")
            })
            .count();
        (up == names.len()).then_some(())
    })
    .await;
    let pids: Vec<(&str, u32)> = NODES
        .iter()
        .map(|n| {
            let filter = format!("label=com.docker.swarm.service.name={AGENT}");
            let id = container_on_filter(n, &filter);
            let pid = mn(n, &["inspect", "--format", "{{.State.Pid}}", &id]);
            (*n, pid.parse().expect("a pid"))
        })
        .collect();
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
    };
    let before: Vec<u64> = pids.iter().map(|(_, p)| ticks(*p)).collect();
    let t0 = std::time::Instant::now();
    let window = Duration::from_secs(30);
    poll_until(Duration::from_secs(60), "30 s idle", || async {
        (t0.elapsed() >= window).then_some(())
    })
    .await;
    let secs = t0.elapsed().as_secs_f64();
    // USER_HZ is 100 on Linux.
    for ((node, pid), b) in pids.iter().zip(before) {
        let cpu = (ticks(*pid) - b) as f64 / 100.0 / secs * 100.0;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        println!("agent on {node}, 50 routed services idle: CPU {cpu:.3} % of a core over {secs:.0} s, RSS {rss}");
        assert!(cpu < 1.0, "agent on {node}: {cpu:.3} % of a core");
    }
    for name in &names {
        let _ = try_mn("mn1", &["service", "rm", name]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while try_mn("mn1", &["network", "rm", &net]).is_err() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Issue 23: what a rate limit counts across edges. `rate_limit=5/s`, one client asking as
/// fast as it can through two edges at once for 3 s: each edge lets it in 5 times a second
/// (within 10 %), so behind two edges it gets twice the label. Counted per edge (each HAProxy
/// has its own stick tables, no `peers`), as docs/access.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_counted_per_edge_so_a_client_of_two_edges_gets_it_from_each() {
    let _c = cluster().await;
    let svc = Svc::create(1, &["--label", "com.docker.lb.rate_limit=5/s"]);
    let all = edges();
    svc.converged(&all, 1).await;
    let limited = |node: &'static str| {
        let host = svc.host.clone();
        async move {
            poll_until(CONVERGE, &format!("{node}: the limit applied"), || async {
                let refused = (0..10).any(|_| {
                    get(node, &host, None).is_ok_and(|r| r["status"].as_u64() == Some(429))
                });
                refused.then_some(())
            })
            .await;
        }
    };
    limited("mn1").await;
    limited("mn2").await;
    // The windows the limit counts (1 s and 10 s) start again.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let window = Duration::from_secs(3);
    let counts: Vec<(u64, u64)> = std::thread::scope(|s| {
        let hammer = |node: &'static str| {
            let host = svc.host.clone();
            s.spawn(move || {
                let started = std::time::Instant::now();
                let (mut ok, mut refused) = (0u64, 0u64);
                while started.elapsed() < window {
                    match get(node, &host, None).map(|r| r["status"].as_u64()) {
                        Ok(Some(200)) => ok += 1,
                        Ok(Some(429)) => refused += 1,
                        other => panic!("{node}: {other:?}"),
                    }
                }
                (ok, refused)
            })
        };
        let a = hammer("mn1");
        let b = hammer("mn2");
        vec![a.join().expect("mn1"), b.join().expect("mn2")]
    });
    println!(
        "rate_limit=5/s, one client through mn1 and mn2 for 3 s: (let in, refused) {counts:?}"
    );
    for (node, (ok, refused)) in ["mn1", "mn2"].iter().zip(&counts) {
        let rate = *ok as f64 / window.as_secs_f64();
        assert!(
            *refused > 0,
            "{node}: the client asked faster than the limit"
        );
        assert!(
            (4.5..=5.5).contains(&rate),
            "{node}: {rate:.2}/s, not within 10 % of 5/s (per edge)"
        );
    }
}
