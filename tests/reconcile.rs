//! The whole driver against a real HAProxy (no Docker): hand-made Swarm snapshots go through
//! `Reconciler::pass` (model -> plan -> runtime API / files / master-CLI reload). Tasks are
//! stand-in HTTP servers on 127.0.0.N, all on the service's port, as Swarm tasks share
//! `com.docker.lb.port`. Each step checks `show servers state`, real HTTP through the frontend,
//! and the reload counter from `show proc`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::{
    free_port, http_get, http_get_target, http_get_with, poll_until, reloads, Backend, Haproxy,
    STARTUP,
};
use swarm_lb::haproxy::codec::{self, ServerRow};
use swarm_lb::haproxy::{Admin, AdminClient, Command, Master, ProxyState, Query};
use swarm_lb::model::{
    DesiredTaskState, Network, Service, Snapshot, Task, TaskAddress, TaskState, Vip,
};
use swarm_lb::reconcile::{Reconciler, Report, Strategy};

const NET: &str = "net-1";

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A routed service with `labels` added to hosts + port.
fn service(name: &str, hosts: &str, port: u16, extra: &[(&str, &str)]) -> Service {
    let mut labels: BTreeMap<String, String> = [
        ("com.docker.lb.hosts", hosts.to_owned()),
        ("com.docker.lb.port", port.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    Service {
        id: format!("id-{name}"),
        name: name.to_owned(),
        labels,
        networks: vec![NET.to_owned()],
        vips: vec![],
    }
}

fn task(service: &str, n: u8, desired: DesiredTaskState) -> Task {
    Task {
        id: format!("task-{service}-{n}"),
        service_id: format!("id-{service}"),
        slot: Some(n.into()),
        state: TaskState::Running,
        desired_state: desired,
        addresses: vec![TaskAddress {
            network: NET.to_owned(),
            addr: ip(n),
        }],
    }
}

/// Running tasks `n` of `service` (at 127.0.0.`n`), as Swarm lists them.
fn running(service: &str, ns: &[u8]) -> Vec<Task> {
    ns.iter()
        .map(|&n| task(service, n, DesiredTaskState::Running))
        .collect()
}

fn snapshot(services: Vec<Service>, tasks: Vec<Task>) -> Snapshot {
    Snapshot {
        services: swarm_lb::model::shared(services),
        tasks: swarm_lb::model::shared(tasks),
        networks: vec![Network {
            id: NET.to_owned(),
            name: "front".to_owned(),
            driver: "overlay".to_owned(),
            attachable: true,
            ingress: false,
        }],
    }
}

/// A driver for `haproxy` without Docker (no container to attach).
fn reconciler_for(haproxy: &Haproxy, block: usize, add_server: bool) -> Reconciler {
    support::driver(haproxy, block, add_server)
}

struct Rig {
    haproxy: Haproxy,
    reconciler: Reconciler,
}

impl Rig {
    async fn start(block: usize) -> Rig {
        Self::start_with(block, true).await
    }

    async fn start_with(block: usize, add_server: bool) -> Rig {
        let haproxy = Haproxy::start(&ProxyState::default()).await;
        let reconciler = reconciler_for(&haproxy, block, add_server);
        Rig {
            haproxy,
            reconciler,
        }
    }

    /// One pass and, as the pass loop runs it, the one it asks for after a delay (from 3.4,
    /// the retirement of a backend whose routes the first one moved: `Report::next_pass_in`);
    /// then the files they write in the background are on disk. The reports added up.
    async fn pass(&mut self, snap: &Snapshot) -> Report {
        let mut report = self.reconciler.pass(snap).await.expect("pass");
        while let Some(delay) = report.next_pass_in.take() {
            tokio::time::sleep(delay).await;
            let next = self.reconciler.pass(snap).await.expect("follow-up pass");
            report = Report {
                commands: report.commands + next.commands,
                reloads: report.reloads + next.reloads,
                attached: report.attached + next.attached,
                detached: report.detached + next.detached,
                files_written: report.files_written || next.files_written,
                next_pass_in: next.next_pass_in,
            };
        }
        self.reconciler.flush().await.expect("files written");
        report
    }

    fn master(&self) -> Master {
        self.haproxy.master()
    }

    async fn reloads(&self) -> u32 {
        reloads(&self.master()).await
    }

    async fn all_rows(&self) -> Vec<ServerRow> {
        let mut rt = AdminClient::new(self.haproxy.admin_socket());
        let replies = rt
            .query(&[Query::ShowServersState { backend: None }])
            .await
            .expect("show servers state");
        let text = replies[0].as_ref().expect("reply").clone();
        codec::parse_servers_state(&text).expect("parse")
    }

    /// The services' backends that hold servers (not swarm-lb's own `_...` ones).
    async fn backend_names(&self) -> Vec<String> {
        let names: BTreeSet<String> = self
            .all_rows()
            .await
            .into_iter()
            .map(|r| r.backend.as_str().to_owned())
            .filter(|b| !b.starts_with('_'))
            .collect();
        names.into_iter().collect()
    }

    async fn rows(&self, backend: &str) -> Vec<ServerRow> {
        let mut rows: Vec<ServerRow> = self
            .all_rows()
            .await
            .into_iter()
            .filter(|r| r.backend.as_str() == backend)
            .collect();
        // HAProxy lists the servers of a backend created at runtime (3.4+) in another order.
        rows.sort_by_key(|r| r.server.slot_index());
        rows
    }

    /// (server, addr:port) of the servers taking traffic (admin state folds to Ready: a slot
    /// rendered `disabled` keeps its "config maint" bit 0x04 after `state ready`).
    async fn ready(&self, backend: &str) -> BTreeMap<String, SocketAddr> {
        self.rows(backend)
            .await
            .into_iter()
            .filter(|r| codec::admin_from_bits(r.admin_state) == Admin::Ready)
            .map(|r| {
                (
                    r.server.as_str().to_owned(),
                    SocketAddr::new(r.addr, r.port),
                )
            })
            .collect()
    }

    /// The set of backend names that answer `host` over `tries` requests.
    async fn answers(&self, host: &str, tries: usize) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        for _ in 0..tries {
            let (status, body) = http_get(self.haproxy.http_port, host).await;
            assert_eq!(status, 200, "GET {host}: {body}");
            seen.insert(body);
        }
        seen
    }

    /// The addresses the files on disk give `backend` as enabled servers.
    fn config_servers(&self, backend: &str) -> BTreeSet<String> {
        let config = std::fs::read_to_string(self.haproxy.config_path()).expect("config");
        let mut inside = false;
        let mut out = BTreeSet::new();
        for line in config.lines() {
            let l = line.trim();
            if let Some(name) = l.strip_prefix("backend ") {
                inside = name.split_whitespace().next() == Some(backend);
            } else if inside && l.starts_with("server ") && !l.contains(" disabled") {
                out.insert(l.split_whitespace().nth(2).unwrap_or("").to_owned());
            }
        }
        out
    }
}

async fn tasks_at(name: &str, port: u16, ns: &[u8]) -> Vec<Backend> {
    let mut v = Vec::new();
    for &n in ns {
        v.push(Backend::start_at(&format!("{name}-{n}"), SocketAddr::new(ip(n), port)).await);
    }
    v
}

fn names(prefix: &str, ns: &[u8]) -> BTreeSet<String> {
    ns.iter().map(|n| format!("{prefix}-{n}")).collect()
}

#[tokio::test]
async fn creating_a_routed_service_reloads_once_before_3_4_and_every_task_answers() {
    let mut rig = Rig::start(42).await;
    let (_, per) = reloads_per_backend(&rig).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3]).await;
    let snap = snapshot(
        vec![service("web", "web.test", port, &[])],
        vec![
            task("web", 2, DesiredTaskState::Running),
            task("web", 3, DesiredTaskState::Running),
        ],
    );
    let before = rig.reloads().await;
    let report = rig.pass(&snap).await;
    assert_eq!(report.reloads, per as usize);
    assert_eq!(rig.reloads().await, before + per);
    let ready = rig.ready("web").await;
    assert_eq!(ready.len(), 2);
    assert_eq!(rig.rows("web").await.len(), 42, "one block of slots");
    assert_eq!(rig.answers("web.test", 8).await, names("web", &[2, 3]));
    assert_eq!(http_get(rig.haproxy.http_port, "other.test").await.0, 503);

    // Nothing changed: the next pass does nothing at all.
    let again = rig.pass(&snap).await;
    assert!(!again.changed(), "{again:?}");
    assert_eq!(rig.reloads().await, before + per);
}

#[tokio::test]
async fn a_plan_never_reloads_haproxy_even_when_its_admin_socket_is_lost() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2]).await;
    let snap = snapshot(
        vec![service("web", "web.test", port, &[])],
        vec![task("web", 2, DesiredTaskState::Running)],
    );
    rig.pass(&snap).await;
    // What a refused reload's exiting worker leaves: the worker serves, its socket path is
    // gone. A pass reloads to get it back (`recover_admin_socket`); a plan must not.
    std::fs::remove_file(rig.haproxy.admin_socket()).expect("unlink the admin socket");
    let before = rig.reloads().await;

    // `swarm-lb plan` is a new process: a new connection, which finds nobody at the path.
    let planned = reconciler_for(&rig.haproxy, 42, true).plan(&snap).await;
    assert!(planned.is_err(), "planning without the admin socket fails");
    assert_eq!(rig.reloads().await, before, "a plan never reloads");
    assert_eq!(rig.answers("web.test", 4).await, names("web", &[2]));
}

#[tokio::test]
async fn scaling_fills_and_frees_slots_at_runtime_without_a_reload() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3, 4, 5, 6]).await;
    let svc = || vec![service("web", "web.test", port, &[])];
    rig.pass(&snapshot(svc(), running("web", &[2]))).await;
    let reloads = rig.reloads().await;
    let first = rig.ready("web").await;

    for ns in [&[2u8, 3, 4, 5, 6][..], &[2, 6], &[2, 4, 5]] {
        let report = rig.pass(&snapshot(svc(), running("web", ns))).await;
        assert_eq!(report.reloads, 0);
        assert!(report.commands > 0);
        let ready = rig.ready("web").await;
        let want: BTreeSet<SocketAddr> = ns.iter().map(|&n| SocketAddr::new(ip(n), port)).collect();
        assert_eq!(ready.values().copied().collect::<BTreeSet<_>>(), want);
        assert_eq!(
            rig.answers("web.test", 4 * ns.len()).await,
            names("web", ns)
        );
        // The files say the same as the runtime, so any reload is safe.
        let on_disk: BTreeSet<String> = want.iter().map(ToString::to_string).collect();
        assert_eq!(rig.config_servers("web"), on_disk);
    }
    // Task 2 never moved from its slot.
    assert_eq!(rig.ready("web").await.get("s1"), first.get("s1"));
    assert_eq!(rig.reloads().await, reloads);
}

#[tokio::test]
async fn only_slots_holding_a_task_are_health_checked_whether_loaded_grown_or_created_at_runtime() {
    // Block 4: the first pass makes 4 slots (from the config before 3.4, created at runtime
    // from 3.4), 6 tasks grow the backend by `add server`, 2 free the others again.
    let mut rig = Rig::start(4).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3, 4, 5, 6, 7]).await;
    let svc = || vec![service("web", "web.test", port, &[])];
    for ns in [
        &[2u8][..],
        &[2, 3, 4, 5, 6, 7],
        &[2, 7],
        &[2, 3, 4, 5, 6, 7],
    ] {
        rig.pass(&snapshot(svc(), running("web", ns))).await;
        let rows = rig.rows("web").await;
        assert!(rows.len() >= 4, "{rows:?}");
        for r in &rows {
            let holds_task = r.port == port && ns.iter().any(|&n| r.addr == ip(n));
            assert_eq!(
                codec::is_checking(r.check_state),
                holds_task,
                "tasks {ns:?}: {}/{} at {}:{} (check state {})",
                r.backend,
                r.server,
                r.addr,
                r.port,
                r.check_state
            );
        }
        assert_eq!(
            rig.answers("web.test", 4 * ns.len()).await,
            names("web", ns)
        );
    }
}

fn repairs(rig: &Rig) -> u64 {
    rig.reconciler.observer().metrics.resync_repairs.get()
}

#[tokio::test]
async fn incremental_passes_leave_haproxy_as_a_full_read_sees_it_through_random_churn() {
    // 40 steps of a seeded walk over three services (tasks up and down, draining, hosts
    // edited, a service removed and back): after each step a full read must find exactly
    // what the incremental passes knew (no repair) and plan nothing.
    let mut rig = Rig::start(4).await;
    let port = free_port();
    let _tasks = tasks_at("t", port, &(2..=12).collect::<Vec<u8>>()).await;
    let mut seed: u64 = 0x5eed_1234_abcd_0042;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let names = ["web", "api", "db"];
    let mut up: BTreeMap<&str, BTreeSet<u8>> =
        names.iter().map(|n| (*n, BTreeSet::new())).collect();
    let mut draining: BTreeSet<(&str, u8)> = BTreeSet::new();
    let mut hosts: BTreeMap<&str, String> =
        names.iter().map(|n| (*n, format!("{n}.test"))).collect();
    let mut present: BTreeSet<&str> = names.iter().copied().collect();
    for step in 0..40 {
        let name = names[next(3) as usize];
        match next(6) {
            0 | 1 => {
                let n = 2 + next(11) as u8;
                up.get_mut(name).unwrap().insert(n);
                draining.remove(&(name, n));
            }
            2 => {
                let n = 2 + next(11) as u8;
                if up.get_mut(name).unwrap().remove(&n) {
                    draining.insert((name, n));
                }
            }
            3 => {
                draining.retain(|(s, _)| *s != name);
            }
            4 => {
                hosts.insert(name, format!("{name}{step}.test"));
            }
            _ => {
                if !present.remove(name) {
                    present.insert(name);
                }
            }
        }
        let services = present
            .iter()
            .map(|n| service(n, &hosts[n], port, &[]))
            .collect();
        let mut tasks = Vec::new();
        for n in present.iter() {
            tasks.extend(running(n, &up[n].iter().copied().collect::<Vec<_>>()));
            tasks.extend(
                draining
                    .iter()
                    .filter(|(s, _)| s == n)
                    .map(|(s, t)| task(s, *t, DesiredTaskState::Shutdown)),
            );
        }
        let snap = snapshot(services, tasks);
        rig.pass(&snap).await;
        rig.reconciler.read_everything_next();
        let again = rig.pass(&snap).await;
        assert!(
            !again.changed(),
            "step {step}: the full read re-planned {again:?}"
        );
        assert_eq!(
            repairs(&rig),
            0,
            "step {step}: a full read found other than known"
        );
    }
}

#[tokio::test]
async fn a_change_made_behind_the_drivers_back_is_repaired_at_the_next_full_read_and_counted() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3]).await;
    let snap = snapshot(
        vec![service("web", "web.test", port, &[])],
        running("web", &[2, 3]),
    );
    rig.pass(&snap).await;
    assert_eq!(rig.ready("web").await.len(), 2);
    // By hand, over the admin socket: one task's slot to maint.
    let slot = rig
        .ready("web")
        .await
        .into_keys()
        .next()
        .expect("a ready slot");
    let mut by_hand = AdminClient::new(rig.haproxy.admin_socket());
    let cmd = Command::SetState {
        backend: support::backend_name("web"),
        server: swarm_lb::model::ServerName::parse(&slot).expect("slot"),
        state: Admin::Maint,
    };
    let reply = by_hand.execute(&[cmd]).await.expect("runtime");
    assert!(reply[0].is_ok(), "{reply:?}");
    assert_eq!(rig.ready("web").await.len(), 1);
    // An incremental pass plans from what it knows: nothing to do.
    assert!(!rig.pass(&snap).await.changed());
    assert_eq!(repairs(&rig), 0);
    // The resync reads everything, counts the difference and puts the slot back.
    rig.reconciler.read_everything_next();
    assert!(rig.pass(&snap).await.changed());
    assert_eq!(repairs(&rig), 1);
    assert_eq!(rig.ready("web").await.len(), 2);
    assert_eq!(rig.answers("web.test", 8).await, names("web", &[2, 3]));
}

#[tokio::test]
async fn a_task_swarm_is_stopping_is_drained_at_once() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3]).await;
    let svc = vec![service("web", "web.test", port, &[])];
    rig.pass(&snapshot(
        svc.clone(),
        vec![
            task("web", 2, DesiredTaskState::Running),
            task("web", 3, DesiredTaskState::Running),
        ],
    ))
    .await;
    let reloads = rig.reloads().await;
    rig.pass(&snapshot(
        svc,
        vec![
            task("web", 2, DesiredTaskState::Running),
            task("web", 3, DesiredTaskState::Shutdown),
        ],
    ))
    .await;
    let rows = rig.rows("web").await;
    let drained: Vec<&ServerRow> = rows.iter().filter(|r| r.admin_state & 0x08 != 0).collect();
    assert_eq!(drained.len(), 1, "{rows:?}");
    assert_eq!(drained[0].addr, ip(3));
    assert_eq!(rig.answers("web.test", 6).await, names("web", &[2]));
    assert_eq!(rig.reloads().await, reloads);
}

#[tokio::test]
async fn growing_past_the_slots_adds_servers_at_runtime_and_writes_them_to_the_config() {
    let mut rig = Rig::start(2).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3, 4, 5, 6]).await;
    let svc = || vec![service("web", "web.test", port, &[])];
    rig.pass(&snapshot(svc(), running("web", &[2]))).await;
    assert_eq!(rig.rows("web").await.len(), 2);
    let reloads = rig.reloads().await;

    let report = rig
        .pass(&snapshot(svc(), running("web", &[2, 3, 4, 5, 6])))
        .await;
    assert_eq!(report.reloads, 0, "add server, not a reload");
    assert!(rig.rows("web").await.len() >= 5);
    assert_eq!(
        rig.answers("web.test", 20).await,
        names("web", &[2, 3, 4, 5, 6])
    );
    assert_eq!(
        rig.config_servers("web").len(),
        5,
        "the config has the added servers too"
    );
    assert_eq!(rig.reloads().await, reloads);
}

#[tokio::test]
async fn without_add_server_growth_reloads_and_keeps_every_task() {
    let mut rig = Rig::start_with(2, false).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3, 4]).await;
    let svc = || vec![service("web", "web.test", port, &[])];
    rig.pass(&snapshot(svc(), running("web", &[2]))).await;
    let reloads = rig.reloads().await;
    let report = rig.pass(&snapshot(svc(), running("web", &[2, 3, 4]))).await;
    assert_eq!(report.reloads, 1);
    assert_eq!(rig.reloads().await, reloads + 1);
    assert_eq!(rig.answers("web.test", 12).await, names("web", &[2, 3, 4]));
}

#[tokio::test]
async fn a_vip_service_is_one_server_at_its_vip_and_its_scaling_sends_nothing() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    // The "VIP" is one more local server standing in for Swarm's L4 balancer.
    let _vip = Backend::start_at("vip", SocketAddr::new(ip(50), port)).await;
    let mut svc = service(
        "api",
        "api.test",
        port,
        &[("com.docker.lb.backend_mode", "vip")],
    );
    svc.vips = vec![Vip {
        network: NET.to_owned(),
        addr: ip(50),
    }];
    let (_, per) = reloads_per_backend(&rig).await;
    let report = rig
        .pass(&snapshot(
            vec![svc.clone()],
            vec![task("api", 2, DesiredTaskState::Running)],
        ))
        .await;
    assert_eq!(report.reloads, per as usize);
    let ready = rig.ready("api").await;
    assert_eq!(
        ready.into_iter().collect::<Vec<_>>(),
        vec![("vip".to_owned(), SocketAddr::new(ip(50), port))]
    );
    assert_eq!(
        rig.answers("api.test", 3).await,
        BTreeSet::from(["vip".to_owned()])
    );
    let reloads = rig.reloads().await;

    for ns in [&[2u8, 3, 4, 5][..], &[7], &[]] {
        let report = rig
            .pass(&snapshot(vec![svc.clone()], running("api", ns)))
            .await;
        assert!(!report.changed(), "scaling a vip service sent {report:?}");
    }
    assert_eq!(rig.reloads().await, reloads);
}

#[tokio::test]
async fn changing_the_hosts_label_is_a_map_edit_not_a_reload() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2]).await;
    let tasks = || vec![task("web", 2, DesiredTaskState::Running)];
    rig.pass(&snapshot(
        vec![service("web", "old.test", port, &[])],
        tasks(),
    ))
    .await;
    let reloads = rig.reloads().await;
    let report = rig
        .pass(&snapshot(
            vec![service("web", "new.test,also.test", port, &[])],
            tasks(),
        ))
        .await;
    assert_eq!(report.reloads, 0);
    assert_eq!(rig.answers("new.test", 2).await, names("web", &[2]));
    assert_eq!(rig.answers("also.test", 2).await, names("web", &[2]));
    assert_eq!(http_get(rig.haproxy.http_port, "old.test").await.0, 503);
    let map = std::fs::read_to_string(rig.haproxy.map_path()).expect("map");
    assert!(
        map.contains("new.test") && !map.contains("old.test"),
        "{map}"
    );
    assert_eq!(rig.reloads().await, reloads);
}

#[tokio::test]
async fn a_hand_written_host_list_routes_its_good_hosts_and_absolute_names_route_like_relative_ones(
) {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2]).await;
    let tasks = || vec![task("web", 2, DesiredTaskState::Running)];
    // Spaces and tabs around items, a trailing comma, a bad item, an absolute name.
    rig.pass(&snapshot(
        vec![service(
            "web",
            "a.example.test, b.example.test ,\tc.example.test,bad;host,d.example.test.,",
            port,
            &[],
        )],
        tasks(),
    ))
    .await;
    for host in [
        "a.example.test",
        "b.example.test",
        "c.example.test",
        "d.example.test",
        "a.example.test.",
        "A.Example.Test.:80",
        "d.example.test.:8080",
    ] {
        assert_eq!(
            rig.answers(host, 1).await,
            names("web", &[2]),
            "Host: {host}"
        );
    }
    for host in ["a.example.test..", ".", "bad;host", "e.example.test."] {
        assert_eq!(
            http_get(rig.haproxy.http_port, host).await.0,
            503,
            "Host: {host}"
        );
    }
    let map = std::fs::read_to_string(rig.haproxy.map_path()).expect("map");
    assert_eq!(
        map.lines().count(),
        4,
        "one entry per host, none per dot: {map}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_runtime_changes_made_before_it() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _web = tasks_at("web", port, &[2, 3, 4]).await;
    let web = || service("web", "web.test", port, &[]);
    rig.pass(&snapshot(vec![web()], running("web", &[2]))).await;
    // Runtime-only change: two more tasks in slots, no reload.
    let report = rig
        .pass(&snapshot(vec![web()], running("web", &[2, 3, 4])))
        .await;
    assert_eq!(report.reloads, 0);
    let before = rig.ready("web").await;

    // Another service appears: a reload before 3.4 (forced from 3.4, which adds the backend
    // at runtime). The first backend must still hold the same tasks.
    let port2 = free_port();
    let _api = tasks_at("api", port2, &[9]).await;
    let mut tasks = running("web", &[2, 3, 4]);
    tasks.extend(running("api", &[9]));
    let reloads = rig.reloads().await;
    let report = rig
        .pass(&snapshot(
            vec![web(), service("api", "api.test", port2, &[])],
            tasks,
        ))
        .await;
    let (_, per) = reloads_per_backend(&rig).await;
    assert_eq!(report.reloads, per as usize);
    if per == 0 {
        rig.master()
            .reload(Duration::from_secs(10))
            .await
            .expect("forced reload");
    }
    poll_until(STARTUP, "the reload counted", || async {
        (rig.reloads().await == reloads + 1).then_some(())
    })
    .await;
    assert_eq!(
        rig.ready("web").await,
        before,
        "same tasks in the same slots after the reload"
    );
    assert_eq!(rig.answers("web.test", 12).await, names("web", &[2, 3, 4]));
    assert_eq!(rig.answers("api.test", 2).await, names("api", &[9]));
}

#[tokio::test]
async fn removing_a_routed_service_reloads_once_before_3_4() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2]).await;
    let _api = tasks_at("api", port, &[3]).await;
    let both = snapshot(
        vec![
            service("web", "web.test", port, &[]),
            service("api", "api.test", port, &[]),
        ],
        vec![
            task("web", 2, DesiredTaskState::Running),
            task("api", 3, DesiredTaskState::Running),
        ],
    );
    rig.pass(&both).await;
    let reloads = rig.reloads().await;
    let only_web = snapshot(
        vec![service("web", "web.test", port, &[])],
        vec![task("web", 2, DesiredTaskState::Running)],
    );
    let (_, per) = reloads_per_backend(&rig).await;
    let report = rig.pass(&only_web).await;
    assert_eq!(report.reloads, per as usize);
    assert_eq!(rig.reloads().await, reloads + per);
    assert!(rig.rows("api").await.is_empty());
    assert_eq!(http_get(rig.haproxy.http_port, "api.test").await.0, 503);
    assert_eq!(rig.answers("web.test", 2).await, names("web", &[2]));
}

#[tokio::test]
async fn a_hostile_label_edit_keeps_the_last_good_routing_and_touches_nothing_else() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2]).await;
    let _api = tasks_at("api", port, &[3]).await;
    let tasks = || {
        vec![
            task("web", 2, DesiredTaskState::Running),
            task("api", 3, DesiredTaskState::Running),
        ]
    };
    rig.pass(&snapshot(
        vec![
            service("web", "web.test", port, &[]),
            service("api", "api.test", port, &[]),
        ],
        tasks(),
    ))
    .await;
    let reloads = rig.reloads().await;
    let config = std::fs::read_to_string(rig.haproxy.config_path()).expect("config");

    for (label, value) in [
        ("com.docker.lb.hosts", "web.test\n    server x 10.9.9.9:80"),
        ("com.docker.lb.hosts", "web.test;show info"),
        ("com.docker.lb.port", "70000"),
        ("com.docker.lb.backend_mode", "fast"),
    ] {
        let mut web = service("web", "web.test", port, &[]);
        web.labels.insert(label.to_owned(), value.to_owned());
        let desired = rig.reconciler.desired(&snapshot(
            vec![web.clone(), service("api", "api.test", port, &[])],
            tasks(),
        ));
        assert!(
            desired.errors.iter().any(|e| {
                let m = e.to_string();
                m.contains("service web") && m.contains(label)
            }),
            "{label}={value:?}: {:?}",
            desired.errors
        );
        let report = rig
            .pass(&snapshot(
                vec![web, service("api", "api.test", port, &[])],
                tasks(),
            ))
            .await;
        assert!(!report.changed(), "{label}={value:?} changed {report:?}");
        assert_eq!(rig.answers("web.test", 2).await, names("web", &[2]));
        assert_eq!(rig.answers("api.test", 2).await, names("api", &[3]));
    }
    assert_eq!(
        std::fs::read_to_string(rig.haproxy.config_path()).expect("config"),
        config
    );
    assert_eq!(rig.reloads().await, reloads);
}

#[tokio::test]
async fn the_reload_strategy_reloads_for_every_change() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3]).await;
    let svc = || vec![service("web", "web.test", port, &[])];
    rig.pass(&snapshot(
        svc(),
        vec![task("web", 2, DesiredTaskState::Running)],
    ))
    .await;
    rig.reconciler = {
        let old = std::mem::replace(&mut rig.reconciler, dummy(&rig.haproxy));
        drop(old);
        let mut r = dummy(&rig.haproxy);
        r.set_strategy(Strategy::Reload);
        r
    };
    let reloads = rig.reloads().await;
    let report = rig
        .pass(&snapshot(
            svc(),
            vec![
                task("web", 2, DesiredTaskState::Running),
                task("web", 3, DesiredTaskState::Running),
            ],
        ))
        .await;
    assert_eq!(report.reloads, 1);
    assert_eq!(report.commands, 0);
    assert_eq!(rig.reloads().await, reloads + 1);
    poll_until(Duration::from_secs(5), "both tasks answering", || async {
        (rig.answers("web.test", 8).await == names("web", &[2, 3])).then_some(())
    })
    .await;
}

/// A fresh driver (a restarted swarm-lb) for the rig's HAProxy, with its usual settings.
fn dummy(haproxy: &Haproxy) -> Reconciler {
    reconciler_for(haproxy, 42, true)
}

#[tokio::test]
async fn a_file_write_that_fails_is_reported_and_redone_once_the_disk_is_fixed() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3]).await;
    let svc = || vec![service("web", "web.test", port, &[])];
    rig.pass(&snapshot(svc(), running("web", &[2]))).await;

    // hosts.map can no longer be replaced: a directory stands where it was.
    let map = rig.haproxy.map_path();
    std::fs::remove_file(&map).expect("remove map");
    std::fs::create_dir(&map).expect("dir in the map's place");
    let report = rig
        .reconciler
        .pass(&snapshot(svc(), running("web", &[2, 3])))
        .await
        .expect("the pass itself does not wait for the disk");
    assert_eq!(report.reloads, 0);
    let err = rig
        .reconciler
        .flush()
        .await
        .expect_err("the failed write is reported");
    assert_eq!(err.path, map, "{err}");
    // HAProxy got the change all the same.
    assert_eq!(rig.answers("web.test", 8).await, names("web", &[2, 3]));

    std::fs::remove_dir(&map).expect("fix the disk");
    let report = rig.pass(&snapshot(svc(), running("web", &[2, 3]))).await;
    assert!(!report.changed(), "nothing left to apply: {report:?}");
    assert!(report.files_written, "the files are written again");
    let config = std::fs::read_to_string(rig.haproxy.config_path()).expect("config");
    assert!(
        config.contains(&ip(3).to_string()),
        "task 3 in the config:\n{config}"
    );
    let written = std::fs::read_to_string(&map).expect("map");
    assert!(written.contains("web.test"), "{written}");
}

#[tokio::test]
async fn a_sticky_cookie_brings_each_client_back_to_its_task_also_for_tasks_added_at_runtime() {
    let mut rig = Rig::start(2).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3, 4, 5, 6]).await;
    let svc = || {
        vec![service(
            "web",
            "web.test",
            port,
            &[("com.docker.lb.sticky_session_cookie", "sid")],
        )]
    };
    rig.pass(&snapshot(svc(), running("web", &[2, 3]))).await;
    let reloads = rig.reloads().await;
    // Slots s3 and s4 take tasks 4 and 5 by `set server addr`; task 6 needs `add server`.
    let report = rig
        .pass(&snapshot(svc(), running("web", &[2, 3, 4, 5, 6])))
        .await;
    assert_eq!(report.reloads, 0, "{report:?}");
    assert_eq!(rig.reloads().await, reloads);

    // A client without the cookie is given one naming the task that answered; with it, it
    // comes back to that task every time.
    let http = rig.haproxy.http_port;
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + STARTUP;
    while cookies.len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not a cookie from every task within {STARTUP:?}: {cookies:?}"
        );
        let r = http_get_with(http, "web.test", "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let set = r.header("set-cookie").expect("set-cookie").to_owned();
        let value = set
            .strip_prefix("sid=")
            .and_then(|v| v.split(';').next())
            .unwrap_or_else(|| panic!("set-cookie: {set}"))
            .to_owned();
        assert!(!value.is_empty(), "an empty cookie from {}: {set}", r.body);
        if let Some(task) = cookies.insert(value.clone(), r.body.clone()) {
            assert_eq!(task, r.body, "one cookie, two tasks: {value}");
        }
    }
    let tasks: BTreeSet<String> = cookies.values().cloned().collect();
    assert_eq!(
        tasks,
        names("web", &[2, 3, 4, 5, 6]),
        "a distinct cookie per task"
    );
    for (value, task) in &cookies {
        for _ in 0..4 {
            let r = http_get_with(http, "web.test", &format!("cookie: sid={value}\r\n")).await;
            assert_eq!((r.status, &r.body), (200, task), "cookie {value}");
            assert_eq!(
                r.header("set-cookie"),
                None,
                "a valid cookie is not set again"
            );
        }
    }
}

/// Issue 22's CI run: one request of 2,108 got `_default`'s 503 while a service's options
/// changed on 3.4.7. The request had looked up the old generation in the hosts map, and the
/// same plan unpublished it before the request's `use_backend` rule ran. A backend now stays
/// published for a while after its routes leave it. Toggled 12 times under 4 clients, no
/// request may fail, on every version (a reload each time before 3.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggling_a_services_options_under_load_fails_no_request_on_any_version() {
    let mut rig = Rig::start(42).await;
    let (version, per) = reloads_per_backend(&rig).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3]).await;
    let snap = |ip_hash: &str| {
        snapshot(
            vec![service(
                "web",
                "web.test",
                port,
                &[("com.docker.lb.ip_hash", ip_hash)],
            )],
            running("web", &[2, 3]),
        )
    };
    rig.pass(&snap("false")).await;
    let http = rig.haproxy.http_port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match support::try_http_get(http, "web.test").await {
                        Ok((200, _)) => ok += 1,
                        Ok((status, body)) => failed.push(format!("{status} {}", body.trim())),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    for round in 0..12 {
        let on = if round % 2 == 0 { "true" } else { "false" };
        let report = rig.pass(&snap(on)).await;
        assert_eq!(
            report.reloads, per as usize,
            "HAProxy {version}: {report:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.expect("client");
        ok += o;
        failed.extend(f);
    }
    println!(
        "HAProxy {version}: 12 options changes under load: {ok} ok, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "HAProxy {version}: {} of {} failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "HAProxy {version}: only {ok} requests");
    if per == 0 {
        let backends = rig.backend_names().await;
        assert_eq!(
            backends,
            ["web:13"],
            "HAProxy {version}: old generations retired"
        );
    }
}

#[tokio::test]
async fn turning_ip_hash_on_is_one_reload_before_3_4_a_new_generation_from_3_4_then_a_client_always_reaches_the_same_task(
) {
    let mut rig = Rig::start(42).await;
    let (version, per) = reloads_per_backend(&rig).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2, 3, 4]).await;
    let tasks = || running("web", &[2, 3, 4]);
    rig.pass(&snapshot(
        vec![service("web", "web.test", port, &[])],
        tasks(),
    ))
    .await;
    assert_eq!(rig.answers("web.test", 9).await, names("web", &[2, 3, 4]));
    let slots_before = rig.rows("web").await;

    let reloads = rig.reloads().await;
    let hashed = || {
        vec![service(
            "web",
            "web.test",
            port,
            &[("com.docker.lb.ip_hash", "true")],
        )]
    };
    let report = rig.pass(&snapshot(hashed(), tasks())).await;
    assert_eq!(
        report.reloads, per as usize,
        "HAProxy {version}: {report:?}"
    );
    assert_eq!(rig.reloads().await, reloads + per);
    // From 3.4 the service moved to its next generation; before, its backend was rewritten.
    let serving = if per == 0 { "web:2" } else { "web" };
    rig.reconciler.flush().await.expect("files written");
    let config = std::fs::read_to_string(rig.haproxy.config_path()).expect("config");
    assert!(config.contains("    balance source\n"), "{config}");
    let slot_addrs = |rows: &[ServerRow]| -> Vec<String> {
        rows.iter()
            .map(|r| format!("{} {}:{}", r.server, r.addr, r.port))
            .collect()
    };
    assert_eq!(
        slot_addrs(&rig.rows(serving).await),
        slot_addrs(&slots_before),
        "every task kept its slot (HAProxy {version})"
    );
    // Every request comes from 127.0.0.1: one task answers them all.
    assert_eq!(rig.answers("web.test", 9).await.len(), 1);

    // Nothing changes when nothing changed: the options were learnt from the config loaded.
    let again = rig.pass(&snapshot(hashed(), tasks())).await;
    assert!(!again.changed(), "{again:?}");
    let restarted = dummy(&rig.haproxy);
    let mut rig = Rig {
        haproxy: rig.haproxy,
        reconciler: restarted,
    };
    let after_restart = rig.pass(&snapshot(hashed(), tasks())).await;
    assert!(
        !after_restart.changed(),
        "a restarted driver reads the options from the files: {after_restart:?}"
    );
}

#[tokio::test]
async fn a_default_backend_takes_every_host_nobody_routes_and_toggling_it_is_a_map_edit() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _web = tasks_at("web", port, &[2]).await;
    let _api = tasks_at("api", port, &[3]).await;
    let snap = |web_is_default: bool| {
        let web_labels: &[(&str, &str)] = if web_is_default {
            &[("com.docker.lb.default_backend", "true")]
        } else {
            &[]
        };
        snapshot(
            vec![
                service("web", "web.test", port, web_labels),
                service("api", "api.test", port, &[]),
            ],
            vec![
                task("web", 2, DesiredTaskState::Running),
                task("api", 3, DesiredTaskState::Running),
            ],
        )
    };
    rig.pass(&snap(true)).await;
    assert_eq!(rig.answers("web.test", 2).await, names("web", &[2]));
    assert_eq!(rig.answers("api.test", 2).await, names("api", &[3]));
    assert_eq!(rig.answers("nobody.test", 2).await, names("web", &[2]));
    let map = std::fs::read_to_string(rig.haproxy.map_path()).expect("map");
    assert!(map.lines().any(|l| l == "-default- web"), "{map}");

    let reloads = rig.reloads().await;
    let report = rig.pass(&snap(false)).await;
    assert_eq!((report.reloads, report.commands), (0, 1), "{report:?}");
    assert_eq!(http_get(rig.haproxy.http_port, "nobody.test").await.0, 503);
    assert_eq!(rig.answers("api.test", 2).await, names("api", &[3]));

    let report = rig.pass(&snap(true)).await;
    assert_eq!((report.reloads, report.commands), (0, 1), "{report:?}");
    assert_eq!(rig.answers("nobody.test", 2).await, names("web", &[2]));
    assert_eq!(rig.reloads().await, reloads, "no reload for either edit");
}

/// How many of `n` requests for `host` each task answered (the body names the task).
async fn spread(rig: &Rig, host: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (status, body) = http_get(rig.haproxy.http_port, host).await;
        assert_eq!(status, 200, "GET {host}: {body}");
        *seen.entry(body).or_default() += 1;
    }
    seen
}

/// The share (percent) of `counts` answered by tasks whose name starts with `prefix`.
fn share(counts: &BTreeMap<String, usize>, prefix: &str) -> f64 {
    let total: usize = counts.values().sum();
    let mine: usize = counts
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum();
    100.0 * mine as f64 / total as f64
}

#[tokio::test]
async fn services_sharing_a_host_split_its_traffic_and_canary_changes_never_reload() {
    let mut rig = Rig::start(42).await;
    let (p1, p2) = (free_port(), free_port());
    let _v1 = tasks_at("v1", p1, &[2, 3, 4, 5]).await;
    let _v2 = tasks_at("v2", p2, &[9, 10]).await;
    let v1 = |extra: &[(&str, &str)]| service("v1", "demo.test", p1, extra);
    let v2 = |hosts: &str, extra: &[(&str, &str)]| service("v2", hosts, p2, extra);
    let tasks = |v1s: &[u8], v2s: &[u8]| -> Vec<Task> {
        let mut t: Vec<Task> = v1s
            .iter()
            .map(|&n| task("v1", n, DesiredTaskState::Running))
            .collect();
        t.extend(
            v2s.iter()
                .map(|&n| task("v2", n, DesiredTaskState::Running)),
        );
        t
    };
    // Both routed, v2 on a host of its own: two backends, created by reloads.
    rig.pass(&snapshot(
        vec![v1(&[]), v2("v2.test", &[])],
        tasks(&[2, 3, 4, 5], &[9]),
    ))
    .await;
    let reloads = rig.reloads().await;

    // The canary: v2 claims demo.test too (a label edit): 4 + 1 tasks, about 20 % for v2.
    let report = rig
        .pass(&snapshot(
            vec![v1(&[]), v2("demo.test,v2.test", &[])],
            tasks(&[2, 3, 4, 5], &[9]),
        ))
        .await;
    assert_eq!(report.reloads, 0);
    let counts = spread(&rig, "demo.test", 400).await;
    println!("4 + 1 tasks: {counts:?}");
    let v2_share = share(&counts, "v2-");
    assert!(
        (13.0..=27.0).contains(&v2_share),
        "v2 got {v2_share} %: {counts:?}"
    );
    assert_eq!(counts.len(), 5, "every task answers: {counts:?}");
    let reply = http_get_target(rig.haproxy.http_port, "v2.test", "/").await;
    assert_eq!(reply.body, "v2-9", "v2's own host still goes to v2 alone");

    // Weights: v1 1, v2 3 -> 75 % for v2.
    rig.pass(&snapshot(
        vec![
            v1(&[("com.docker.lb.weight", "1")]),
            v2("demo.test", &[("com.docker.lb.weight", "3")]),
        ],
        tasks(&[2, 3, 4, 5], &[9]),
    ))
    .await;
    let counts = spread(&rig, "demo.test", 400).await;
    let v2_share = share(&counts, "v2-");
    assert!(
        (68.0..=82.0).contains(&v2_share),
        "v2 got {v2_share} %: {counts:?}"
    );

    // Promotion: v2 scaled up, v1 to 0: all traffic to v2.
    rig.pass(&snapshot(
        vec![v1(&[]), v2("demo.test", &[])],
        tasks(&[], &[9, 10]),
    ))
    .await;
    let counts = spread(&rig, "demo.test", 40).await;
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        ["v2-10", "v2-9"]
    );

    // v2 gives the host back (label edit): v1 alone again.
    rig.pass(&snapshot(
        vec![v1(&[]), v2("v2.test", &[])],
        tasks(&[2, 3], &[9, 10]),
    ))
    .await;
    let counts = spread(&rig, "demo.test", 20).await;
    assert!(counts.keys().all(|k| k.starts_with("v1-")), "{counts:?}");
    let map = std::fs::read_to_string(rig.haproxy.map_path()).expect("map");
    assert!(!map.contains('~'), "no bucket left: {map}");
    assert_eq!(
        rig.reloads().await,
        reloads,
        "no reload for any canary change"
    );
}

#[tokio::test]
async fn context_roots_route_paths_on_segment_boundaries_and_a_rewrite_strips_the_root() {
    let mut rig = Rig::start(42).await;
    let ports = [free_port(), free_port(), free_port()];
    let _site = tasks_at("site", ports[0], &[2]).await;
    let _api = tasks_at("api", ports[1], &[3]).await;
    let _v2 = tasks_at("apiv2", ports[2], &[4]).await;
    let running_all = || {
        vec![
            task("site", 2, DesiredTaskState::Running),
            task("api", 3, DesiredTaskState::Running),
            task("apiv2", 4, DesiredTaskState::Running),
        ]
    };
    let services = |api_root: &str| {
        vec![
            service("site", "shop.test", ports[0], &[]),
            service(
                "api",
                "shop.test",
                ports[1],
                &[("com.docker.lb.context_root", api_root)],
            ),
            service(
                "apiv2",
                "shop.test",
                ports[2],
                &[
                    ("com.docker.lb.context_root", "/api/v2"),
                    ("com.docker.lb.context_root_rewrite", "true"),
                ],
            ),
        ]
    };
    rig.pass(&snapshot(services("/api"), running_all())).await;
    let reloads = rig.reloads().await;
    let port = rig.haproxy.http_port;
    for (target, task, seen) in [
        ("/", "site-2", "/"),
        ("/apple", "site-2", "/apple"),
        ("/api", "api-3", "/api"),
        ("/api/", "api-3", "/api/"),
        ("/api/x?q=1", "api-3", "/api/x?q=1"),
        ("/api/v20", "api-3", "/api/v20"),
        ("/api/v2", "apiv2-4", "/"),
        ("/api/v2/", "apiv2-4", "/"),
        ("/api/v2/orders/7?q=1&r=2", "apiv2-4", "/orders/7?q=1&r=2"),
    ] {
        let r = http_get_target(port, "shop.test", target).await;
        assert_eq!(r.status, 200, "{target}: {}", r.head);
        assert_eq!(r.body, task, "{target}");
        assert_eq!(
            r.header("x-target"),
            Some(seen),
            "{target}: what the task received"
        );
    }
    // Moving a context root on a live service is a map edit.
    let report = rig.pass(&snapshot(services("/shop"), running_all())).await;
    assert_eq!(report.reloads, 0);
    assert_eq!(
        http_get_target(port, "shop.test", "/api/x").await.body,
        "site-2"
    );
    assert_eq!(
        http_get_target(port, "shop.test", "/shop/x").await.body,
        "api-3"
    );
    assert_eq!(rig.reloads().await, reloads);
}

#[tokio::test]
async fn redirects_answer_the_target_with_the_rest_of_the_path_and_the_query() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _web = tasks_at("web", port, &[2]).await;
    let tasks = || vec![task("web", 2, DesiredTaskState::Running)];
    rig.pass(&snapshot(
        vec![service("web", "old.test,new.test", port, &[])],
        tasks(),
    ))
    .await;
    let reloads = rig.reloads().await;
    let labels = [
        (
            "com.docker.lb.redirects",
            "http://old.test,http://new.test; http://new.test/legacy,https://new.test/v2",
        ),
        ("com.docker.lb.redirect_code", "308"),
    ];
    let report = rig
        .pass(&snapshot(
            vec![service("web", "old.test,new.test", port, &labels)],
            tasks(),
        ))
        .await;
    assert_eq!(report.reloads, 0, "redirects are map edits");
    let http = rig.haproxy.http_port;
    for (host, target, location) in [
        ("old.test", "/", "http://new.test/"),
        ("old.test", "/a/b?q=1", "http://new.test/a/b?q=1"),
        ("new.test", "/legacy", "https://new.test/v2/"),
        ("new.test", "/legacy/x?y=2", "https://new.test/v2/x?y=2"),
    ] {
        let r = http_get_target(http, host, target).await;
        assert_eq!(r.status, 308, "{host}{target}: {}", r.head);
        assert_eq!(r.header("location"), Some(location), "{host}{target}");
    }
    let r = http_get_target(http, "new.test", "/legacyx").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "web-2"),
        "not under /legacy"
    );
    assert_eq!(rig.reloads().await, reloads);
}

#[tokio::test]
async fn a_task_failing_max_fails_times_in_a_row_leaves_rotation_and_returns_after_fail_timeout() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let tasks = tasks_at("web", port, &[2, 3, 4]).await;
    // A timeout far above how long the 30 requests below take, even on a loaded machine.
    let labels = [
        ("com.docker.lb.max_fails", "2"),
        ("com.docker.lb.fail_timeout", "3s"),
    ];
    let running3 = || {
        [2, 3, 4]
            .iter()
            .map(|&n| task("web", n, DesiredTaskState::Running))
            .collect::<Vec<_>>()
    };
    rig.pass(&snapshot(
        vec![service("web", "web.test", port, &labels)],
        running3(),
    ))
    .await;
    let config = std::fs::read_to_string(rig.haproxy.config_path()).expect("config");
    assert!(
        config.contains("default-server observe layer7 error-limit 2 on-error mark-down rise 2 fastinter 3000ms downinter 3000ms"),
        "{config}"
    );
    assert_eq!(rig.answers("web.test", 6).await, names("web", &[2, 3, 4]));

    // Task 3 starts answering 500: after 2 failures in a row it takes no more traffic.
    tasks[1].set_failing(true);
    let http = rig.haproxy.http_port;
    let mut statuses = Vec::new();
    let mut last_failure = None;
    for _ in 0..30 {
        let status = http_get(http, "web.test").await.0;
        if status == 500 {
            last_failure = Some(std::time::Instant::now());
        }
        statuses.push(status);
    }
    let failed = statuses.iter().filter(|s| **s == 500).count();
    println!("30 requests while task 3 fails: {failed} answered 500");
    // Two in a row mark it down; a passing health check between two failures (the task still
    // accepts connections) starts HAProxy's count again, so on a loaded machine it may fail
    // once or twice more before it is out (seen once on 3.4 in CI: 3).
    assert!(
        (2..=4).contains(&failed),
        "task 3 should fail max_fails (2) times, then be out: {statuses:?}"
    );
    assert!(statuses[10..].iter().all(|s| *s == 200), "{statuses:?}");
    let down_at = last_failure.expect("a failure");

    // It recovers at once, but stays out for fail_timeout (3 s) from its mark-down, then comes
    // back within a check interval (2 s in the template).
    tasks[1].set_failing(false);
    poll_until(
        Duration::from_secs(10),
        "task 3 back in rotation",
        || async {
            let (status, body) = http_get(http, "web.test").await;
            (status == 200 && body == "web-3").then_some(())
        },
    )
    .await;
    let out_for = down_at.elapsed();
    println!("task 3 out for {out_for:?} (fail_timeout 3 s)");
    assert!(
        out_for >= Duration::from_millis(2900),
        "back after {out_for:?}, before fail_timeout"
    );
}

#[tokio::test]
async fn a_haproxy_running_a_config_from_another_template_is_reloaded_once() {
    let mut rig = Rig::start(42).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2]).await;
    let snap = snapshot(
        vec![service("web", "web.test", port, &[])],
        vec![task("web", 2, DesiredTaskState::Running)],
    );
    rig.pass(&snap).await;
    // What an older swarm-lb (or another --template) left: the same backends, another template.
    let path = rig.haproxy.config_path();
    let current = std::fs::read_to_string(&path).expect("config");
    let older = format!("# from an older template\n{current}");
    std::fs::write(&path, &older).expect("write");
    std::fs::write(swarm_lb::haproxy::render::Files::good_path(&path), &older).expect("write");
    rig.master()
        .reload(Duration::from_secs(10))
        .await
        .expect("haproxy loads it");
    rig.reconciler = reconciler_for(&rig.haproxy, 42, true);
    let before = rig.reloads().await;

    let report = rig.pass(&snap).await;
    assert_eq!(report.reloads, 1, "the template changed: one reload");
    assert_eq!(rig.reloads().await, before + 1);
    let report = rig.pass(&snap).await;
    assert_eq!(report.reloads, 0, "and only one");
    assert_eq!(rig.answers("web.test", 2).await, names("web", &[2]));
    let now = std::fs::read_to_string(&path).expect("config");
    assert!(!now.contains("older template"), "{now}");
}

/// How many reloads a routed service that appears or goes costs on this HAProxy: none from
/// 3.4 (backends created and deleted through the Runtime API), one before.
async fn reloads_per_backend(rig: &Rig) -> (String, u32) {
    let info = AdminClient::new(rig.haproxy.admin_socket())
        .info()
        .await
        .expect("show info");
    let v = info.version;
    let text = format!("{}.{}.{}", v.major, v.minor, v.patch);
    let per = u32::from((v.major, v.minor) < (3, 4));
    (text, per)
}

/// The value of the `name` cookie HAProxy set, checked not empty.
fn cookie_value(r: &support::Response, name: &str) -> String {
    let set = r.header("set-cookie").expect("set-cookie").to_owned();
    let value = set
        .strip_prefix(&format!("{name}="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("set-cookie: {set}"))
        .to_owned();
    assert!(!value.is_empty(), "an empty cookie from {}: {set}", r.body);
    value
}

#[tokio::test]
async fn services_appear_and_go_without_a_reload_from_3_4_and_route_at_every_step_through_a_reload_and_a_restart(
) {
    let mut rig = Rig::start(4).await;
    let (version, per) = reloads_per_backend(&rig).await;
    let port = free_port();
    let _tasks = tasks_at("t", port, &[2, 3, 4, 5, 6, 7, 8]).await;
    let web = || service("web", "web.test", port, &[]);
    let hashed = || {
        service(
            "hashed",
            "hashed.test",
            port,
            &[("com.docker.lb.ip_hash", "true")],
        )
    };
    let cart = |name: &str| {
        service(
            name,
            &format!("{name}.test"),
            port,
            &[("com.docker.lb.sticky_session_cookie", "SRV")],
        )
    };
    let mut expected = rig.reloads().await;
    let mut step = |what: &str, report: &Report, cost: u32| {
        expected += cost;
        assert_eq!(
            report.reloads, cost as usize,
            "HAProxy {version}, {what}: {report:?}"
        );
        (what.to_owned(), expected)
    };
    let check = |(what, want): (String, u32), got: u32| {
        assert_eq!(got, want, "HAProxy reloads after: {what}");
    };

    // A plain service appears: its backend, slots and routes at runtime from 3.4.
    let snap = snapshot(vec![web()], running("web", &[2, 3]));
    let r = rig.pass(&snap).await;
    check(step("web created", &r, per), rig.reloads().await);
    assert_eq!(rig.answers("web.test", 8).await, names("t", &[2, 3]));
    assert_eq!(rig.rows("web").await.len(), 4, "one block of slots");

    // A second one from the other balance defaults, filled past its first block.
    let snap = snapshot(
        vec![web(), hashed()],
        [running("web", &[2, 3]), running("hashed", &[4, 5, 6, 7, 8])].concat(),
    );
    let r = rig.pass(&snap).await;
    check(step("hashed created", &r, per), rig.reloads().await);
    assert_eq!(rig.rows("hashed").await.len(), 8, "two blocks of slots");
    assert_eq!(rig.ready("hashed").await.len(), 5);
    // `balance source`: one client (one address) always reaches the same task.
    assert_eq!(rig.answers("hashed.test", 6).await.len(), 1);
    assert_eq!(rig.answers("web.test", 8).await, names("t", &[2, 3]));

    // Scaling is runtime on every version.
    let snap = snapshot(
        vec![web(), hashed()],
        [running("web", &[2, 3, 6]), running("hashed", &[4, 5])].concat(),
    );
    let r = rig.pass(&snap).await;
    check(step("scaled", &r, 0), rig.reloads().await);
    assert_eq!(rig.answers("web.test", 12).await, names("t", &[2, 3, 6]));

    // A sticky cookie of a name HAProxy has no defaults section for yet: one reload on every
    // version (it brings the section); a second service with that cookie needs none on 3.4.
    let mut services = vec![web(), hashed(), cart("cart")];
    let mut tasks = [
        running("web", &[2, 3, 6]),
        running("hashed", &[4, 5]),
        running("cart", &[7]),
    ]
    .concat();
    let r = rig.pass(&snapshot(services.clone(), tasks.clone())).await;
    check(
        step("cart created (new cookie name)", &r, 1),
        rig.reloads().await,
    );
    services.push(cart("cart2"));
    tasks.extend(running("cart2", &[7, 8]));
    let r = rig.pass(&snapshot(services.clone(), tasks.clone())).await;
    check(step("cart2 created", &r, per), rig.reloads().await);
    let http = rig.haproxy.http_port;
    let first = http_get_with(http, "cart2.test", "").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let value = cookie_value(&first, "SRV");
    for _ in 0..6 {
        let again = http_get_with(http, "cart2.test", &format!("Cookie: SRV={value}\r\n")).await;
        assert_eq!(again.body, first.body, "the cookie brings the client back");
    }

    // A service goes: routes first, then its backend, at runtime from 3.4.
    services.retain(|s| s.name != "hashed");
    tasks.retain(|t| t.service_id != "id-hashed");
    let snap = snapshot(services.clone(), tasks.clone());
    let r = rig.pass(&snap).await;
    check(step("hashed removed", &r, per), rig.reloads().await);
    assert!(rig.rows("hashed").await.is_empty(), "no hashed server left");
    assert_eq!(http_get(http, "hashed.test").await.0, 503);
    assert_eq!(rig.answers("web.test", 6).await, names("t", &[2, 3, 6]));
    let again = rig.pass(&snap).await;
    assert!(!again.changed(), "{again:?}");

    // Options of a live backend change: from 3.4 a new generation `web:2` from the other
    // defaults, filled, the map switched to it, `web` retired; one reload before.
    services[0] = service(
        "web",
        "web.test",
        port,
        &[("com.docker.lb.ip_hash", "true")],
    );
    let snap = snapshot(services.clone(), tasks.clone());
    let r = rig.pass(&snap).await;
    check(step("web's options changed", &r, per), rig.reloads().await);
    assert_eq!(rig.answers("web.test", 6).await.len(), 1);
    let serving = if per == 0 { "web:2" } else { "web" };
    assert_eq!(rig.ready(serving).await.len(), 3, "HAProxy {version}");
    if per == 0 {
        assert!(
            rig.rows("web").await.is_empty(),
            "the old generation is gone"
        );
    }
    let again = rig.pass(&snap).await;
    assert!(!again.changed(), "{again:?}");

    // A failure limit and TLS to the tasks are server keywords `add server` carries: a
    // service with a failure limit appears at runtime from 3.4 too.
    services.push(service(
        "limited",
        "limited.test",
        port,
        &[
            ("com.docker.lb.max_fails", "2"),
            ("com.docker.lb.fail_timeout", "3s"),
        ],
    ));
    tasks.extend(running("limited", &[2, 3]));
    let snap = snapshot(services.clone(), tasks.clone());
    let r = rig.pass(&snap).await;
    check(step("limited created", &r, per), rig.reloads().await);
    assert_eq!(rig.answers("limited.test", 8).await, names("t", &[2, 3]));
    rig.reconciler.flush().await.expect("files written");
    let config = std::fs::read_to_string(rig.haproxy.config_path()).expect("config");
    assert!(
        config.contains("backend limited from swarm-lb.roundrobin\n    balance roundrobin\n    default-server observe layer7 error-limit 2"),
        "{config}"
    );

    // The files say what HAProxy holds: a forced reload and a restart change nothing.
    rig.master()
        .reload(Duration::from_secs(10))
        .await
        .expect("forced reload");
    let (what, want) = step(
        "forced reload",
        &Report {
            reloads: 1,
            ..Report::default()
        },
        1,
    );
    poll_until(STARTUP, "the reload counted", || async {
        (reloads(&rig.master()).await == want).then_some(())
    })
    .await;
    let after = rig.pass(&snap).await;
    assert!(!after.changed(), "after {what}: {after:?}");
    assert_eq!(rig.answers("web.test", 4).await.len(), 1, "after {what}");
    assert_eq!(
        rig.answers("limited.test", 8).await,
        names("t", &[2, 3]),
        "after {what}"
    );
    assert_eq!(
        rig.answers("cart.test", 4).await,
        names("t", &[7]),
        "after {what}"
    );
    let cart2 = rig.answers("cart2.test", 8).await;
    assert!(
        cart2.is_subset(&names("t", &[7, 8])) && !cart2.is_empty(),
        "{cart2:?}"
    );

    rig.haproxy.restart().await;
    let after = rig.pass(&snap).await;
    assert!(!after.changed(), "after a restart: {after:?}");
    assert_eq!(rig.reloads().await, 0, "a fresh master has not reloaded");
    assert_eq!(rig.answers("web.test", 4).await.len(), 1);
    assert_eq!(rig.answers("limited.test", 8).await, names("t", &[2, 3]));
    assert_eq!(rig.answers("cart.test", 4).await, names("t", &[7]));
    let cart2 = rig.answers("cart2.test", 8).await;
    assert!(
        cart2.is_subset(&names("t", &[7, 8])) && !cart2.is_empty(),
        "{cart2:?}"
    );
    assert!(rig.rows("hashed").await.is_empty());
    assert_eq!(http_get(http, "hashed.test").await.0, 503);
}

/// The resident memory of HAProxy's worker (kB): the master's child.
fn worker_rss_kb(master: u32) -> u64 {
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .unwrap_or_default();
    let worker: u32 = children
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .expect("a worker process");
    let status = std::fs::read_to_string(format!("/proc/{worker}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Issue 24's measurement behind `HOSTS_MAX`: one service listing 10,000 hosts is routed at
/// runtime (10,000 `add map`, no reload on any version once its backend exists), every host
/// answers, and shrinking it to 5,000 is 5,000 `del map`. Prints the pass times and HAProxy's
/// worker memory. A measurement, run by hand (`--ignored`); the figures are in
/// docs/limits.md.
#[tokio::test]
#[ignore = "a measurement: cargo test --test reconcile -- --ignored ten_thousand --nocapture"]
async fn ten_thousand_hosts_on_one_service_are_routed_and_shrunk_at_runtime() {
    let mut rig = Rig::start(42).await;
    let (version, _) = reloads_per_backend(&rig).await;
    let port = free_port();
    let _tasks = tasks_at("web", port, &[2]).await;
    let hosts = |n: usize| -> String {
        (0..n)
            .map(|i| format!("h{i}.many.test"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let snap = |n: usize| {
        snapshot(
            vec![service("web", &hosts(n), port, &[])],
            running("web", &[2]),
        )
    };
    rig.pass(&snap(1)).await;
    let reloads = rig.reloads().await;
    let rss_before = worker_rss_kb(rig.haproxy.pid());
    let started = std::time::Instant::now();
    let report = rig.pass(&snap(10_000)).await;
    let grow = started.elapsed();
    let rss_after = worker_rss_kb(rig.haproxy.pid());
    assert_eq!(report.reloads, 0, "HAProxy {version}: {report:?}");
    for i in [0, 4_999, 9_999] {
        let (status, _) = http_get(rig.haproxy.http_port, &format!("h{i}.many.test")).await;
        assert_eq!(status, 200, "h{i}.many.test");
    }
    let started = std::time::Instant::now();
    let report = rig.pass(&snap(5_000)).await;
    let shrink = started.elapsed();
    assert_eq!(report.reloads, 0, "HAProxy {version}: {report:?}");
    assert_eq!(
        http_get(rig.haproxy.http_port, "h9999.many.test").await.0,
        503
    );
    assert_eq!(
        http_get(rig.haproxy.http_port, "h4999.many.test").await.0,
        200
    );
    assert_eq!(rig.reloads().await, reloads, "no reload");
    println!(
        "HAProxy {version}: 1 -> 10,000 hosts in one pass {grow:?} (map entries added at \
         runtime), worker RSS {rss_before} -> {rss_after} kB ({:.0} bytes a host); \
         10,000 -> 5,000 in {shrink:?}",
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / 10_000.0
    );
}
