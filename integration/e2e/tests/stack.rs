//! `docker-stack.yml` deployed as users deploy it (issue 21), on the 3-node Swarm of
//! `scripts/multinode.sh up --registry`: each node's engine on its own `/var/run/docker.sock`
//! (the stack's bind mounts reach that node), the images pushed to a registry on the cluster's
//! network and pulled by name (mn2 and mn3 hold none beforehand; no `--resolve-image never`),
//! `docker stack deploy -c docker-stack.yml` with only the image variables set. Worker edges
//! reach the manager's API through `api` (`swarm-lb api-proxy`: swarm-lb's reads, and its
//! secrets copy jobs checked field by field), so every edge, workers included, serves the
//! certificates of Docker secrets; every edge follows the agents over the `hints` overlay by
//! `tasks.agent`.
//!
//! One deviation, only where the kernel forces it: the stack's overlays are `encrypted` (IPsec
//! ESP, AES-GCM). A kernel without ESP (this machine's: `CONFIG_INET_ESP` and
//! `CONFIG_CRYPTO_GCM` not set) creates them but drops every packet between nodes; there the
//! test deploys a copy of the file without the two `encrypted` options, and says so.
//!
//! Automatic certificates are on (`SWARM_LB_ACME=true`, docs/acme.md) as an operator turns them
//! on: the stack's ACME variables and a second stack file (`-c docker-stack.yml -c <override>`)
//! that mounts the CA's HTTPS root as a Docker config at `SWARM_LB_ACME_CA_BUNDLE`. The CA is
//! Pebble (Debian's `pebble`) in the switch namespace `mn-sw`, on the nodes' link, whose DNS
//! sends every name to mn2, a worker edge.
//!
//! One test changes the layout for its run: mn2 and mn3 promoted to managers (three Raft
//! managers), so that `lb_manager-edge`, the edges that may order, runs on every node; they are
//! demoted again at its end, failing or not (`ThreeManagers`), since the others assume mn1 the
//! only manager.
//!
//! Tests run one at a time (a lock) on one deployment; `scripts/test.sh` runs them, then
//! `scripts/multinode.sh down` (which also ends Pebble, a process of the switch namespace; it
//! dies with the test binary anyway).

mod mn;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mn::*;
use serde_json::Value;
use swarm_lb_e2e::{poll_until, unique};
use swarm_lb_testkit::pebble::{Pebble, PebbleOptions};

/// The stack's name: services `lb_manager-edge`, `lb_worker-edge`, `lb_agent`, `lb_api`.
const STACK: &str = "lb";

struct Deployed {
    /// The cluster's registry, `host:port`.
    registry: String,
    /// The stack file deployed.
    file: PathBuf,
    /// The second stack file: Pebble's HTTPS root as a Docker config on the edges.
    acme_override: PathBuf,
    /// The ACME CA the edges order from (`SWARM_LB_ACME_DIRECTORY`).
    pebble: Pebble,
    /// Holds the stack file actually deployed when it had to be a copy, and the override.
    _dir: tempfile::TempDir,
}

/// Where the edges find Pebble's HTTPS root (`SWARM_LB_ACME_CA_BUNDLE`).
const ACME_CA_IN_CONTAINER: &str = "/etc/swarm-lb/acme-ca.pem";
/// The switch namespace's address on the nodes' link (where Pebble listens).
const SWITCH_IP: [u8; 4] = [10, 213, 0, 1];
/// The node Pebble's DNS sends every name to: a worker edge, reached through its own HAProxy.
const CHALLENGED_NODE: &str = "mn2";

/// Pebble in the switch namespace: ACME on the nodes' link, validating HTTP-01 on port 80 of
/// [`CHALLENGED_NODE`] whatever the name.
async fn start_pebble() -> Pebble {
    Pebble::start_with(PebbleOptions {
        listen: SWITCH_IP.into(),
        netns: Some("mn-sw".to_owned()),
        default_ipv4: node_ip(CHALLENGED_NODE).parse().expect("node address"),
        ..PebbleOptions::new(80)
    })
    .await
}

/// The second stack file of docs/acme.md: the CA bundle as a Docker config mounted at
/// `SWARM_LB_ACME_CA_BUNDLE`. On both edge services: the variable goes to both (the stack's one
/// environment), and swarm-lb checks the file at start on every edge, ordering or not.
fn acme_override(pebble: &Pebble, dir: &Path) -> PathBuf {
    let mount =
        format!("    configs:\n      - source: acme-ca\n        target: {ACME_CA_IN_CONTAINER}\n");
    let yaml = format!(
        "version: \"3.8\"\nservices:\n  manager-edge:\n{mount}  worker-edge:\n{mount}configs:\n  \
         acme-ca:\n    file: {}\n",
        pebble.ca_bundle.display()
    );
    let path = dir.join("acme-override.yml");
    std::fs::write(&path, yaml).expect("write the ACME override");
    path
}

/// `docker stack deploy -c <file> -c <acme override> lb` on the manager, the images from the
/// registry: only the stack's image and ACME variables are set (its defaults publish HTTP and
/// HTTPS on every edge). Deployed again with the same files and variables, nothing changes.
fn stack_deploy(d: &Deployed) {
    let sock = format!("unix://{}/mn1/docker.sock", base().display());
    let out = Command::new(swarm_lb_e2e::docker::bin())
        .args(["-H", &sock, "stack", "deploy", "-c"])
        .arg(&d.file)
        .arg("-c")
        .arg(&d.acme_override)
        .arg(STACK)
        .env(
            "SWARM_LB_IMAGE",
            pulled(&d.registry, &swarm_lb_e2e::docker::swarm_lb_image()),
        )
        .env(
            "HAPROXY_IMAGE",
            pulled(&d.registry, &swarm_lb_e2e::docker::haproxy_image()),
        )
        .env("SWARM_LB_ACME", "true")
        .env("SWARM_LB_ACME_DIRECTORY", &d.pebble.directory)
        .env("SWARM_LB_ACME_EMAIL", "ops@example.com")
        .env("SWARM_LB_ACME_CA_BUNDLE", ACME_CA_IN_CONTAINER)
        .stdin(Stdio::null())
        .output()
        .expect("docker stack deploy");
    assert!(
        out.status.success(),
        "docker stack deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static LOCK: tokio::sync::Mutex<Option<Deployed>> = tokio::sync::Mutex::const_new(None);

fn multinode(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(repo().join("scripts/multinode.sh"))
        .args(args)
        .output()
        .expect("running scripts/multinode.sh")
}

/// `name` as the nodes pull it from the cluster's registry.
fn pulled(registry: &str, name: &str) -> String {
    format!("{registry}/{name}")
}

/// The stack file to deploy: docker-stack.yml itself, or, on a kernel without IPsec ESP, a copy
/// in `dir` without the overlays' `encrypted` options (nothing else differs).
fn stack_file(dir: &Path) -> PathBuf {
    let original = repo().join("docker-stack.yml");
    if multinode(&["esp"]).status.success() {
        return original;
    }
    let text = std::fs::read_to_string(&original).expect("docker-stack.yml");
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    let mut dropped = 0;
    while let Some(line) = lines.next() {
        if line.trim() == "driver_opts:"
            && lines
                .peek()
                .is_some_and(|next| next.trim() == "encrypted: \"true\"")
        {
            lines.next();
            dropped += 1;
            continue;
        }
        out.push(line);
    }
    assert_eq!(
        dropped, 2,
        "docker-stack.yml: expected the two encrypted overlays (api, hints)"
    );
    let copy = dir.join("docker-stack.yml");
    std::fs::write(&copy, out.join("\n") + "\n").expect("write the stack copy");
    println!(
        "this kernel has no IPsec ESP with AES-GCM (`scripts/multinode.sh esp` failed): Swarm's \
         encrypted overlays would drop all traffic between nodes, so the overlays api and hints \
         are deployed UNENCRYPTED (docker-stack.yml without its two `encrypted` options)"
    );
    copy
}

/// The edge container (`lb_manager-edge` or `lb_worker-edge`) on `node`.
fn edge_container(node: &str) -> Option<String> {
    let ns = format!("label=com.docker.stack.namespace={STACK}");
    let out = try_mn(
        node,
        &["ps", "-q", "--filter", &ns, "--filter", "name=edge"],
    )
    .ok()?;
    out.lines().next().map(str::to_owned)
}

/// `swarm-lb status --json` of `node`'s edge.
fn status(node: &str) -> Option<Value> {
    let id = edge_container(node)?;
    let out = try_mn(
        node,
        &["exec", &id, "/usr/local/bin/swarm-lb", "status", "--json"],
    )
    .ok()?;
    serde_json::from_str(&out).ok()
}

fn hints_live(node: &str) -> usize {
    status(node).map_or(0, |v| {
        v["hints"]
            .as_array()
            .map_or(0, |h| h.iter().filter(|s| s["live"] == true).count())
    })
}

/// The cluster up with its registry, the stack deployed from it, every edge answering and
/// following the two other nodes' agents. Held for the whole test.
async fn deployed() -> tokio::sync::MutexGuard<'static, Option<Deployed>> {
    let mut guard = LOCK.lock().await;
    if guard.is_none() {
        swarm_lb_testkit::tls::require_tools(&["openssl", "curl"], "the stack test");
        // Before the cluster: the ACME CA (Debian's `pebble`, scripts/setup.sh installs it).
        swarm_lb_testkit::pebble::require_pebble();
        let t0 = Instant::now();
        let out = multinode(&["up", "--registry"]);
        assert!(
            out.status.success(),
            "the 3-node Swarm with its registry did not start: {}\nIt needs root, Debian's \
             docker.io, iproute2, curl and docker-registry (`bash scripts/setup.sh` installs \
             them) and the images of `bash scripts/images.sh`",
            String::from_utf8_lossy(&out.stderr)
        );
        let registry = String::from_utf8_lossy(&multinode(&["registry"]).stdout)
            .trim()
            .to_owned();
        println!(
            "cluster and registry up in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        // Nothing was loaded into the workers: whatever they run, they pulled by name.
        for node in ["mn2", "mn3"] {
            let images = mn(node, &["images", "--format", "{{.Repository}}"]);
            assert!(
                images
                    .lines()
                    .all(|r| r.is_empty() || r.starts_with(&registry)),
                "{node} holds images that were not pulled from {registry}: {images}"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let file = stack_file(dir.path());
        let swarm_lb = pulled(&registry, &swarm_lb_e2e::docker::swarm_lb_image());
        let haproxy = pulled(&registry, &swarm_lb_e2e::docker::haproxy_image());
        let pebble = start_pebble().await;
        let d = Deployed {
            registry: registry.clone(),
            file,
            acme_override: acme_override(&pebble, dir.path()),
            pebble,
            _dir: dir,
        };
        let t1 = Instant::now();
        stack_deploy(&d);
        for e in edges() {
            poll_until(
                Duration::from_secs(180),
                &format!("{}'s edge answering", e.node),
                || async { get(e.node, "nobody.invalid", None).ok().map(drop) },
            )
            .await;
        }
        println!(
            "stack deployed from {registry}: every edge answering {:.1} s after `docker stack \
             deploy` (images pulled by the workers)",
            t1.elapsed().as_secs_f64()
        );
        for node in ["mn2", "mn3"] {
            let images = mn(node, &["images", "--format", "{{.Repository}}"]);
            for wanted in [&swarm_lb, &haproxy] {
                let repo = wanted.rsplit_once(':').map_or(wanted.as_str(), |(r, _)| r);
                assert!(
                    images.lines().any(|l| l == repo),
                    "{node} did not pull {wanted}: {images}"
                );
            }
        }
        *guard = Some(d);
    }
    if let Some(d) = guard.as_ref() {
        // A test that removed the agents and failed before putting them back.
        if try_mn("mn1", &["service", "inspect", "lb_agent"]).is_err() {
            stack_deploy(d);
        }
    }
    for node in NODES {
        poll_until(
            CONVERGE,
            &format!("{node}'s edge following the 2 other nodes' agents (tasks.agent)"),
            || async move { (hints_live(node) == 2).then_some(()) },
        )
        .await;
    }
    guard
}

fn registry(d: &Option<Deployed>) -> &str {
    &d.as_ref().expect("deployed").registry
}

/// Docker secrets on the manager, removed on drop (after the services that name them).
struct Secrets(Vec<String>);

impl Drop for Secrets {
    fn drop(&mut self) {
        for name in &self.0 {
            let deadline = Instant::now() + Duration::from_secs(20);
            while try_mn("mn1", &["secret", "rm", name]).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One HTTPS GET through `node`'s edge from the switch namespace, verified against `ca` (the
/// self-signed certificate itself): the status code, 0 when the handshake or verification failed.
fn https_verified(node: &str, host: &str, ca: &Path) -> u16 {
    sh(&format!(
        "ip netns exec mn-sw curl -s --max-time 5 --cacert {} --resolve {host}:443:{} \
         -o /dev/null -w '%{{http_code}}' https://{host}/",
        ca.display(),
        node_ip(node)
    ))
    .parse()
    .unwrap_or(0)
}

/// The serial of the certificate `node`'s edge serves for SNI `host` (`serial=...`).
fn served_serial(node: &str, host: &str) -> String {
    sh(&format!(
        "ip netns exec mn-sw openssl s_client -connect {}:443 -servername {host} </dev/null \
         2>/dev/null | openssl x509 -noout -serial",
        node_ip(node)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_deployed_from_the_registry_routes_on_every_edge_and_serves_tls_from_docker_secrets_on_every_edge(
) {
    let d = deployed().await;
    let app = pulled(registry(&d), APP);
    let all = edges();
    let before = reloads(&all).await;
    let t0 = Instant::now();
    let svc = Svc::create_from(&app, 6, &[]);
    let tasks = svc.converged(&all, 6).await;
    let nodes: BTreeSet<String> = svc.running().into_values().map(|(n, _)| n).collect();
    assert_eq!(nodes.len(), 3, "tasks not on all three nodes: {nodes:?}");
    println!(
        "6 tasks pulled and running on 3 nodes, in every edge's HAProxy after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // A certificate for the service's host in two Docker secrets, named by its labels.
    let dir = tempfile::tempdir().expect("temp dir");
    let tag = unique("stk");
    let serial = "5A11B0A7";
    let (cert, key) = swarm_lb_testkit::tls::self_signed_pair(dir.path(), &tag, &svc.host, serial);
    let (c, k) = (format!("{tag}-crt"), format!("{tag}-key"));
    let mut secrets = Secrets(Vec::new());
    for (name, file) in [(&c, &cert), (&k, &key)] {
        mn(
            "mn1",
            &["secret", "create", name, &file.display().to_string()],
        );
        secrets.0.push(name.clone());
    }
    let t1 = Instant::now();
    mn(
        "mn1",
        &[
            "service",
            "update",
            "--detach",
            "--quiet",
            "--label-add",
            &format!("com.docker.lb.ssl_cert={c}"),
            "--label-add",
            &format!("com.docker.lb.ssl_key={k}"),
            &svc.name,
        ],
    );
    for e in &all {
        let seen = e.tasks_answering(&svc.host, 6).await;
        assert_eq!(seen.len(), tasks.len(), "{}: {seen:?}", e.node);
    }
    for node in NODES {
        poll_until(
            CONVERGE,
            &format!("{node}'s edge serving the certificate from the secrets"),
            || async { (https_verified(node, &svc.host, &cert) == 200).then_some(()) },
        )
        .await;
        assert_eq!(
            served_serial(node, &svc.host),
            format!("serial={serial}"),
            "openssl s_client through {node}"
        );
        println!(
            "{node}: HTTPS with the secrets' certificate (curl verified, openssl serial) {:.1} s \
             after the labels named them",
            t1.elapsed().as_secs_f64()
        );
    }
    // From 3.4 every edge creates the backend and pushes the certificate at runtime.
    let after = reloads(&all).await;
    println!("reloads per edge (mn1, mn2, mn3) before and after: {before:?} -> {after:?}");
    if swarm_lb_e2e::docker::haproxy_image().contains("3.4") {
        assert_eq!(after, before, "reloads on HAProxy 3.4");
    }
    drop(svc);
    drop(secrets);
}

/// The ACME secrets and configs Swarm holds for `host` (their labels name it), removed on drop:
/// after the service, best effort (a copy job may still name a secret; the cluster goes anyway).
struct AcmeObjects {
    host: String,
}

impl AcmeObjects {
    fn list(&self, kind: &str) -> Vec<String> {
        try_mn(
            "mn1",
            &[
                kind,
                "ls",
                "--filter",
                "label=com.docker.lb.acme",
                "--format",
                "{{.Name}} {{.Labels}}",
            ],
        )
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&self.host))
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        .collect()
    }
}

impl Drop for AcmeObjects {
    fn drop(&mut self) {
        for kind in ["secret", "config"] {
            for name in self.list(kind) {
                let _ = try_mn("mn1", &[kind, "rm", &name]);
            }
        }
    }
}

/// Issue 25 on the stack: a service labelled `com.docker.lb.ssl_acme=true` gets ONE order at
/// Pebble (placed by the manager edge, the only one that may create the lease), its HTTP-01
/// challenge is fetched from the worker edge mn2 (Pebble's DNS gives every name mn2's address,
/// so mn2's HAProxy answered with what it listed through the api-proxy), and then every edge
/// serves the issued certificate (delivered by the copy jobs; the workers' through the
/// api-proxy): `curl --cacert` Pebble's root verifies it through each, one serial on all three,
/// with no HAProxy reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_labelled_ssl_acme_is_ordered_once_validated_through_a_worker_edge_and_served_by_every_edge(
) {
    let d = deployed().await;
    let dep = d.as_ref().expect("deployed");
    let app = pulled(&dep.registry, APP);
    let pebble = &dep.pebble;
    let root = pebble.issuing_root();
    let all = edges();
    let orders_before = pebble.orders();
    let before = reloads(&all).await;
    let created = Instant::now();
    let svc = Svc::create_from(&app, 1, &["--label", "com.docker.lb.ssl_acme=true"]);
    // Dropped explicitly after the service (in a failing test, best effort before it).
    let objects = AcmeObjects {
        host: svc.host.clone(),
    };
    svc.converged(&all, 1).await;
    let routed = reloads(&all).await;
    println!(
        "acme: service routed by every edge {:.1} s after its creation",
        created.elapsed().as_secs_f64()
    );
    let mut serials = BTreeSet::new();
    for node in NODES {
        poll_until(
            CONVERGE,
            &format!("{node}'s edge serving the certificate Pebble issued"),
            || async { (https_verified(node, &svc.host, &root) == 200).then_some(()) },
        )
        .await;
        println!(
            "acme: {node} serves the issued certificate (curl --cacert Pebble's root) {:.1} s \
             after the service was created",
            created.elapsed().as_secs_f64()
        );
        serials.insert(served_serial(node, &svc.host));
    }
    assert_eq!(
        serials.len(),
        1,
        "the edges serve different certificates: {serials:?}"
    );
    assert_eq!(
        pebble.orders() - orders_before,
        1,
        "one order for the whole cluster; Pebble's log:\n{}",
        pebble.log()
    );
    // The certificate is Swarm's: its two secrets, the lease and the answers gone.
    let secrets = objects.list("secret");
    assert_eq!(secrets.len(), 2, "the certificate's secrets: {secrets:?}");
    poll_until(CONVERGE, "the order lease and answers removed", || async {
        objects.list("config").is_empty().then_some(())
    })
    .await;
    let after = reloads(&all).await;
    println!(
        "acme: reloads per edge (mn1, mn2, mn3) before the service, once routed, once served: \
         {before:?} -> {routed:?} -> {after:?}"
    );
    assert_eq!(
        after, routed,
        "the certificate was put in force with a reload"
    );
    if swarm_lb_e2e::docker::haproxy_image().contains("3.4") {
        assert_eq!(after, before, "reloads on HAProxy 3.4");
    }
    drop(svc);
    drop(objects);
}

/// Issue 21's crash through the stack's own agents: a 1-replica service pinned to mn3, its
/// container killed there (no service change; Swarm restarts it). mn3's agent streams the death
/// and the replacement over the stack's `hints` overlay (the edges found it as `tasks.agent`),
/// so mn1's and mn2's edges serve the replacement within a second of mn3's, long before the
/// 30 s resync would tell them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_stacks_agents_a_crashed_task_on_mn3_is_served_by_every_edge_within_a_second_of_its_own_nodes_edge(
) {
    let d = deployed().await;
    let app = pulled(registry(&d), APP);
    let svc = Svc::create_from(
        &app,
        1,
        &[
            "--constraint",
            "node.hostname==mn3",
            "--restart-delay",
            "1s",
        ],
    );
    svc.converged(&edges(), 1).await;
    let rounds: usize = std::env::var("SWARM_LB_E2E_STACK_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let r = crash_rounds(&svc, rounds);
    let behind: Vec<f64> = r.iter().flat_map(|r| [r[0] - r[2], r[1] - r[2]]).collect();
    let remote: Vec<f64> = r.iter().flat_map(|r| [r[0], r[1]]).collect();
    let local: Vec<f64> = r.iter().map(|r| r[2]).collect();
    println!(
        "stack, crash of a task on mn3 (restart delay 1 s), kill -> replacement served: mn3 (own \
         node) {}; mn1+mn2 {}; mn1/mn2 behind mn3 {}",
        summary(&local),
        summary(&remote),
        summary(&behind)
    );
    for (round, r) in r.iter().enumerate() {
        assert!(
            r[0] - r[2] <= 1000.0 && r[1] - r[2] <= 1000.0,
            "round {round}: an edge on another node served the replacement more than 1 s after \
             mn3's edge: {r:?}"
        );
    }
}

/// The address of `lb_api`'s task on the stack's `api` overlay.
fn api_address() -> String {
    // Running ones only: the list keeps the tasks of nodes that were managers for a while
    // (the three-manager ACME test), gone with their addresses.
    let ids = running_task_ids("lb_api");
    let id = ids.first().expect("an lb_api task");
    let json = mn("mn1", &["inspect", id]);
    let tasks: Vec<Value> = serde_json::from_str(&json).expect("task JSON");
    tasks[0]["NetworksAttachments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["Network"]["Spec"]["Name"] == "lb_api")
        .and_then(|a| a["Addresses"][0].as_str())
        .and_then(|a| a.split('/').next())
        .expect("lb_api's address on the api overlay")
        .to_owned()
}

/// `curl` from inside mn2's worker edge's network namespace (where its requests to `api` come
/// from): the status code of METHOD PATH with an optional JSON body.
fn from_worker_edge(method: &str, path: &str, body: Option<&str>) -> u16 {
    let id = edge_container("mn2").expect("mn2's edge container");
    let pid = mn("mn2", &["inspect", "--format", "{{.State.Pid}}", &id]);
    let mut c = Command::new("nsenter");
    c.args([
        "-t",
        &pid,
        "-n",
        "curl",
        "-s",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
    ])
    .args(["-w", "%{http_code}", "-X", method]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    let out = c
        .arg(format!("http://{}:2375{path}", api_address()))
        .output()
        .expect("nsenter curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The narrow allowance of the worker edges' API: swarm-lb's reads pass, a service that only
/// looks like a copy job (one extra bind mount of the host's root) is refused, as are
/// inspections, container calls, service updates and removals of services that are not copy
/// jobs; and the worker edges themselves, which created and removed their copy jobs through
/// it, were refused nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_edges_api_passes_their_reads_and_copy_jobs_and_refuses_anything_else() {
    let d = deployed().await;
    let app = pulled(registry(&d), APP);
    let svc = Svc::create_from(&app, 1, &[]);
    svc.converged(&edges(), 1).await;
    let (lease_creates, refused_before) = api_refusals();
    for path in [
        "/v1.41/version",
        "/v1.41/services",
        "/v1.41/tasks",
        "/v1.41/secrets",
    ] {
        assert_eq!(from_worker_edge("GET", path, None), 200, "GET {path}");
    }
    let id = mn(
        "mn1",
        &["service", "inspect", "--format", "{{.ID}}", &svc.name],
    );
    let own = mn(
        "mn1",
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            "lb_api",
        ],
    );
    // What a copy job looks like, plus the host's root bind-mounted.
    let node = mn("mn2", &["info", "--format", "{{.Swarm.NodeID}}"]);
    let sneaky = serde_json::json!({
        "Name": "swarm-lb-secrets-0000000000000000",
        "Labels": {"org.swarm-lb.role": "secrets-job", "org.swarm-lb.node": node, "org.swarm-lb.volume": "swarm-lb-secrets"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": own,
                "Args": ["copy-secrets", "--from", "/run/secrets", "--to", "/out"],
                "User": "0",
                "Mounts": [
                    {"Target": "/out", "Source": "swarm-lb-secrets", "Type": "volume"},
                    {"Target": "/host", "Source": "/", "Type": "bind"}
                ]
            },
            "Placement": {"Constraints": [format!("node.id=={node}")]},
            "RestartPolicy": {"Condition": "none"}
        },
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    })
    .to_string();
    for (method, path, body) in [
        ("POST", "/v1.41/services/create", Some(sneaky.as_str())),
        ("GET", &format!("/v1.41/services/{id}") as &str, None),
        (
            "POST",
            &format!("/v1.41/services/{id}/update?version=1"),
            Some("{}"),
        ),
        ("DELETE", &format!("/v1.41/services/{id}"), None),
        ("GET", "/v1.41/containers/json", None),
        ("GET", "/v1.41/secrets/x", None),
        ("POST", "/v1.41/secrets/create", Some("{}")),
        ("POST", "/v1.41/networks/create", Some("{}")),
    ] {
        assert_eq!(from_worker_edge(method, path, body), 403, "{method} {path}");
    }
    assert!(
        try_mn(
            "mn1",
            &["service", "inspect", "swarm-lb-secrets-0000000000000000"]
        )
        .is_err(),
        "the look-alike job was created"
    );
    assert!(
        try_mn("mn1", &["service", "inspect", &svc.name]).is_ok(),
        "the service was removed through the proxy"
    );
    assert_eq!(
        refused_before, 0,
        "the api proxy refused calls of the worker edges themselves"
    );
    assert!(
        lease_creates <= 2,
        "{lease_creates} ACME order-lease creates refused: a worker edge refused once must stop \
         ordering (at most one per worker edge, mn2 and mn3)"
    );
    let id = container_on_filter("mn1", "label=com.docker.swarm.service.name=lb_api");
    let pid = mn("mn1", &["inspect", "--format", "{{.State.Pid}}", &id]);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let (lease_creates, probes) = api_refusals();
    println!(
        "api proxy: the worker edges' own calls all passed but {lease_creates} ACME order-lease \
         creates (at most one per worker edge); {probes} probes refused; its RSS {rss}"
    );
}

/// How many requests `lb_api` refused (its log lines): the ACME order-lease creates, and all
/// others. A worker edge that finds a name without a certificate and no lease tries to create
/// the lease once, is refused (403), and orders no more (docs/acme.md: orders are placed by
/// edges with a manager's socket); the ACME test, run before this one, may cause that.
fn api_refusals() -> (usize, usize) {
    let log = mn("mn1", &["service", "logs", "--raw", "lb_api"]);
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("api-proxy refused"))
        .collect();
    let leases = refused
        .iter()
        .filter(|l| l.contains("/configs/create"))
        .count();
    (leases, refused.len() - leases)
}

/// moby#26733's hazard with hints flowing: two routed services on one overlay, scaled against
/// each other so that the addresses one frees are taken by the other's new tasks, on any node.
/// Under load on the first service's host through every edge, no answer ever comes from a task
/// of the other service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_two_services_trade_addresses_across_nodes_a_host_is_never_answered_by_the_other_service(
) {
    let d = deployed().await;
    let app = pulled(registry(&d), APP);
    // A /27 (29 addresses; the VIPs, each node's load-balancer endpoint and the three HAProxy
    // containers take 8): Swarm hands out addresses in turn and wraps, so within a few rounds
    // the addresses one service freed are given to the other's new tasks.
    let a = Svc::create_on(&app, 3, &[], &["--subnet", "10.213.96.0/27"]);
    let all = edges();
    a.converged(&all, 3).await;
    // The second service on the first one's network (so that they share its addresses).
    let b_name = unique("mnreuse");
    let b_host = format!("{b_name}.test");
    mn(
        "mn1",
        &[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            &b_name,
            "--network",
            &a.net,
            "--replicas",
            "1",
            "--env",
            "TASK_NAME={{.Task.Name}}",
            "--label",
            &format!("com.docker.lb.hosts={b_host}"),
            "--label",
            "com.docker.lb.port=8080",
            &app,
        ],
    );
    let b = Svc {
        name: b_name.clone(),
        host: b_host,
        net: a.net.clone(),
    };
    b.converged(&all, 1).await;
    let load = Load::start(&a.host, &NODES);
    let rounds: usize = std::env::var("SWARM_LB_E2E_REUSE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut a_addrs: BTreeSet<String> = a.running().into_keys().collect();
    let mut reused = 0;
    for _ in 0..rounds {
        a.scale(1);
        a.converged(&all, 1).await;
        b.scale(3);
        let b_now = b.converged(&all, 3).await;
        reused += b_now.intersection(&a_addrs).count();
        b.scale(1);
        b.converged(&all, 1).await;
        a.scale(3);
        a_addrs.extend(a.converged(&all, 3).await);
    }
    let summaries = load.stop();
    let mut answered_by: BTreeSet<String> = BTreeSet::new();
    for (_, _, v) in &summaries {
        if let Some(m) = v["by_task"].as_object() {
            answered_by.extend(m.keys().cloned());
        }
    }
    println!(
        "{rounds} rounds of trading tasks: {reused} addresses of {} reused by {}; load on {} \
         through every edge (ok, failed): {:?}; answered by {} tasks",
        a.name,
        b.name,
        a.host,
        summaries
            .iter()
            .map(|(ok, failed, _)| (ok, failed))
            .collect::<Vec<_>>(),
        answered_by.len()
    );
    assert!(
        answered_by
            .iter()
            .all(|t| t.starts_with(&format!("{}.", a.name))),
        "{}'s host answered by another service's task: {answered_by:?}",
        a.host
    );
    assert!(!answered_by.is_empty(), "no answer at all");
    assert!(
        reused > 0,
        "no address of {} was reused by {} in {rounds} rounds: the test proved nothing",
        a.name,
        b.name
    );
    // b shares a's network: its service goes here, and `a`'s drop removes the network (b's own
    // drop would wait for that network while `a` still uses it).
    let _ = try_mn("mn1", &["service", "rm", &b.name]);
    std::mem::forget(b);
}

/// One drain of `node` (a worker), measured on the other two edges: per replacement task and
/// edge, the ms from the task running (Docker's timestamp) to its address ready there; per edge,
/// the ms from the drain command to holding exactly the new set. `node` is active again after.
async fn drain_round(svc: &Svc, node: &str, replicas: usize) -> (Vec<f64>, Vec<f64>) {
    let before = svc.running();
    let old: BTreeSet<String> = before.keys().cloned().collect();
    let on_node: BTreeSet<String> = before
        .iter()
        .filter(|(_, (n, _))| n == node)
        .map(|(a, _)| a.clone())
        .collect();
    assert!(!on_node.is_empty(), "no task of {} on {node}", svc.name);
    let others: Vec<Edge> = edges().into_iter().filter(|e| e.node != node).collect();
    let mut first_seen: BTreeMap<(&str, String), SystemTime> = BTreeMap::new();
    let mut done: BTreeMap<&str, f64> = BTreeMap::new();
    let t0 = Instant::now();
    mn_update("mn1", &["node", "update", "--availability", "drain", node]);
    while done.len() < others.len() {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "drain of {node}: edges not converged: {done:?}"
        );
        for e in &others {
            if done.contains_key(e.node) {
                continue;
            }
            let ready = e.ready(&svc.name).await;
            let now = SystemTime::now();
            for a in ready.difference(&old) {
                first_seen.entry((e.node, a.clone())).or_insert(now);
            }
            if ready.len() == replicas && ready.is_disjoint(&on_node) {
                done.insert(e.node, ms(t0.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let after = svc.running();
    let mut per_task = Vec::new();
    for ((edge, addr), at) in &first_seen {
        let Some((_, Some(since))) = after.get(addr) else {
            panic!("{edge} made {addr} ready, which Swarm does not run: {after:?}");
        };
        per_task.push(ms(at.duration_since(*since).unwrap_or(Duration::ZERO)));
    }
    mn_update("mn1", &["node", "update", "--availability", "active", node]);
    // Back: its edge and agent return; wait until every edge follows the set again.
    svc.converged(&edges(), replicas).await;
    (per_task, done.into_values().collect())
}

/// `lb_agent` removed (no hints) or deployed again, and every edge seeing it.
async fn set_agents(d: &Deployed, on: bool) {
    if on {
        stack_deploy(d);
    } else {
        mn("mn1", &["service", "rm", "lb_agent"]);
    }
    set_agents_seen(if on { 2 } else { 0 }).await;
}

async fn set_agents_seen(want: usize) {
    for node in NODES {
        poll_until(
            CONVERGE,
            &format!("{node}'s edge with {want} live hint streams"),
            || async move { (hints_live(node) == want).then_some(()) },
        )
        .await;
    }
}

/// Drains of a worker (mn3, then mn2, alternately) with the agents and then without them (same
/// run): the replacement tasks start on the other nodes, and the edges there learn of them from
/// the agents' hints, or without hints from the next listing. Printed p50/p99 of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_worker_converges_on_the_other_edges_with_and_without_hints() {
    let d = deployed().await;
    let dep = d.as_ref().expect("deployed");
    let app = pulled(&dep.registry, APP);
    let replicas = 6;
    let svc = Svc::create_from(&app, replicas as u32, &[]);
    svc.converged(&edges(), replicas).await;
    let rounds: usize = std::env::var("SWARM_LB_E2E_DRAIN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut results = Vec::new();
    for hints in [true, false] {
        set_agents(dep, hints).await;
        let (mut tasks, mut whole) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate, and pick a worker that runs a task (drains move them around).
            let running = svc.running();
            let node = [["mn3", "mn2"], ["mn2", "mn3"]][round % 2]
                .into_iter()
                .find(|n| running.values().any(|(on, _)| on == n))
                .expect("a worker with a task");
            let (t, w) = drain_round(&svc, node, replicas).await;
            println!(
                "  drain {node} (hints {}): edges converged after {w:?} ms",
                if hints { "on" } else { "off" }
            );
            tasks.extend(t);
            whole.extend(w);
            if hints {
                // The drained node's agent is a new task at a new address: every edge follows
                // it again (names resolved again every 10 s) before the next round.
                set_agents_seen(2).await;
            }
        }
        results.push((hints, tasks, whole));
    }
    set_agents(dep, true).await;
    for (hints, tasks, whole) in &results {
        println!(
            "drain of a worker, hints {}: replacement running -> ready on the other edges {}; \
             drain command -> edge holds the new set {}",
            if *hints { "on " } else { "off" },
            summary(tasks),
            summary(whole)
        );
    }
    let with = &results[0].1;
    let mut sorted = with.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(
        percentile(&sorted, 0.99) < 1000.0,
        "with hints, a replacement took over a second to reach an edge: {sorted:?}"
    );
}

/// The labels of the ACME order lease whose names contain `needle`, as `key=value` pairs.
fn lease_labels(needle: &str) -> Option<BTreeMap<String, String>> {
    let out = try_mn("mn1", &swarm_lb_e2e::docker::ACME_LEASES_LS).ok()?;
    swarm_lb_e2e::docker::acme_lease_labels(&out, needle)
}

/// The node (`mn1`..`mn3`) and edge container of a lease holder (`<node id>/<container>`, the
/// container as its full ID or its hostname, the short one).
fn holder_edge(holder: &str) -> Option<(&'static str, String)> {
    let (node_id, me) = holder.split_once('/')?;
    let hostname = try_mn(
        "mn1",
        &[
            "node",
            "inspect",
            "--format",
            "{{.Description.Hostname}}",
            node_id,
        ],
    )
    .ok()?;
    let node = NODES.into_iter().find(|n| *n == hostname)?;
    let id = edge_container(node)?;
    (!me.is_empty() && (me.starts_with(&id) || id.starts_with(me))).then_some((node, id))
}

/// `node`'s Swarm role (`manager` or `worker`) as the managers see it.
fn role(node: &str) -> String {
    try_mn(
        "mn1",
        &["node", "inspect", "--format", "{{.Spec.Role}}", node],
    )
    .unwrap_or_default()
}

/// Promotes or demotes `node` (`docker node promote|demote`) and waits until Swarm reports the
/// role and, for a manager, a reachable Raft member. Blocking: also called from a drop.
fn set_role(node: &str, manager: bool) -> Result<(), String> {
    let (verb, want) = if manager {
        ("promote", "manager")
    } else {
        ("demote", "worker")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if role(node) != want {
            if let Err(e) = try_mn("mn1", &["node", verb, node]) {
                last = e;
            }
        }
        let reachable = try_mn(
            "mn1",
            &[
                "node",
                "inspect",
                "--format",
                "{{if .ManagerStatus}}{{.ManagerStatus.Reachability}}{{end}}",
                node,
            ],
        )
        .unwrap_or_default();
        if role(node) == want && (reachable == "reachable") == manager {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "docker node {verb} {node}: not done in 60 s ({last})"
    ))
}

/// mn2 and mn3 managers for one test, so that `lb_manager-edge` runs on all three nodes; on
/// drop (a failing test too) they are workers again, every node active, `lb_manager-edge`
/// deployed and Pebble's DNS on [`CHALLENGED_NODE`], which the other tests of this suite
/// assume (mn1 the only manager, worker edges on mn2 and mn3).
struct ThreeManagers<'a> {
    deployed: &'a Deployed,
}

impl ThreeManagers<'_> {
    fn restore(&self) {
        for node in NODES {
            let _ = try_mn("mn1", &["node", "update", "--availability", "active", node]);
        }
        let challenged = node_ip(CHALLENGED_NODE).parse().expect("node address");
        if let Err(e) = self.deployed.pebble.set_default_ipv4(challenged) {
            eprintln!("restoring Pebble's DNS: {e}");
        }
        // One at a time: 3 -> 2 -> 1 managers, quorum kept at each step.
        for node in ["mn3", "mn2"] {
            if let Err(e) = set_role(node, false) {
                eprintln!("restoring the cluster's layout: {e}");
            }
        }
        if try_mn("mn1", &["service", "inspect", "lb_manager-edge"]).is_err() {
            stack_deploy(self.deployed);
        }
    }
}

impl Drop for ThreeManagers<'_> {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Whether the edge running on `node` now has logged `needle`.
fn edge_logged(node: &str, needle: &str) -> bool {
    edge_container(node)
        .and_then(|id| try_docker_logs(node, &id))
        .is_some_and(|log| log.contains(needle))
}

fn try_docker_logs(node: &str, id: &str) -> Option<String> {
    let sock = format!("unix://{}/{node}/docker.sock", base().display());
    let out = Command::new(swarm_lb_e2e::docker::bin())
        .args(["-H", &sock, "logs", id])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Issue 25's last part on the 3-node Swarm. A service labelled `ssl_acme` appears while only
/// the worker edges run: each is refused the order-lease create once by the api-proxy (403),
/// says so once, and tries no more. Then, with mn2 and mn3 promoted, `lb_manager-edge` (the
/// edges allowed to create the lease) runs on every node: its three edges, started together by
/// one `docker stack deploy`, place ONE order (Pebble's count, one edge's log) and all serve its
/// certificate (one serial, `curl --cacert` Pebble's root through each). Then the edge that
/// takes the next order (a second host added) is killed while it holds the lease and its node
/// drained (no edge restarts there; Pebble's DNS moves from mn2 to a living edge on another
/// node): one edge on another node takes the lapsed lease over and completes the order, only
/// after the lease's expiry (its label); the dead edge's node, active again, serves the same
/// certificate. mn2 and mn3 are workers again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_manager_edges_starting_at_once_order_once_serve_one_certificate_and_finish_an_order_whose_edge_died(
) {
    let d = deployed().await;
    let dep = d.as_ref().expect("deployed");
    let app = pulled(&dep.registry, APP);
    let pebble = &dep.pebble;
    let root = pebble.issuing_root();

    // No edge that may order runs while the service appears: mn1's manager edge removed.
    // HAProxy stays on every node (swarm-lb never removes it; the new edges adopt it).
    mn("mn1", &["service", "rm", "lb_manager-edge"]);
    let managers = ThreeManagers { deployed: dep };
    // `service rm` returns before the task stops: an edge still running would order.
    poll_until(CONVERGE, "mn1's manager edge stopped", || async {
        edge_container("mn1").is_none().then_some(())
    })
    .await;
    let (lease_creates_before, _) = api_refusals();
    let orders_before = pebble.orders();
    let svc = Svc::create_from(&app, 1, &["--label", "com.docker.lb.ssl_acme=true"]);
    let objects = AcmeObjects {
        host: svc.host.clone(),
    };
    // The worker edges want it, are refused the lease create by the api-proxy (403), and say
    // once that they do not order.
    for node in ["mn2", "mn3"] {
        poll_until(
            CONVERGE,
            &format!("{node}'s worker edge logging that it may not order"),
            || async move {
                edge_logged(node, "may not create the ACME order lease").then_some(())
            },
        )
        .await;
    }
    let refused = api_refusals().0 - lease_creates_before;
    assert_eq!(refused, 2, "lease creates refused to the two worker edges");
    // The worker edges go when their nodes become managers.
    let t0 = Instant::now();
    for node in ["mn2", "mn3"] {
        set_role(node, true).unwrap_or_else(|e| panic!("{e}"));
    }
    println!(
        "mn2 and mn3 promoted: 3 Raft managers ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    for node in NODES {
        poll_until(
            CONVERGE,
            &format!("no edge running on {node}"),
            || async move { edge_container(node).is_none().then_some(()) },
        )
        .await;
    }
    // Several order rounds (2 s) later, nothing more: each worker edge tried once.
    let refused_later = api_refusals().0 - lease_creates_before;
    println!(
        "acme, worker edges: {refused} lease creates refused (403), one per worker edge, each \
         logged once; {refused_later} after {:.1} s more",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        refused_later, refused,
        "a worker edge refused the lease kept trying"
    );
    assert_eq!(pebble.orders(), orders_before, "a worker edge ordered");
    poll_until(CONVERGE, "the ssl_acme service running", || async {
        (!svc.running().is_empty()).then_some(())
    })
    .await;

    // The three manager edges at once: one global service, one task per node.
    let deployed_at = Instant::now();
    stack_deploy(dep);
    let mut serials = BTreeSet::new();
    let mut served_in = Vec::new();
    for node in NODES {
        poll_until(
            Duration::from_secs(120),
            &format!("{node}'s manager edge serving the certificate Pebble issued"),
            || async { (https_verified(node, &svc.host, &root) == 200).then_some(()) },
        )
        .await;
        served_in.push((node, deployed_at.elapsed().as_secs_f64()));
        serials.insert(served_serial(node, &svc.host));
    }
    let started: Vec<String> = NODES
        .iter()
        .map(|n| {
            edge_container(n).map_or_else(String::new, |id| {
                mn(n, &["inspect", "--format", "{{.State.StartedAt}}", &id])
            })
        })
        .collect();
    println!(
        "acme, 3 manager edges started together ({started:?}): each serves the issued \
         certificate after `docker stack deploy` +{served_in:?} s"
    );
    assert!(
        NODES.iter().all(|n| edge_container(n).is_some_and(|id| {
            mn(
                n,
                &[
                    "inspect",
                    "--format",
                    "{{index .Config.Labels \"com.docker.swarm.service.name\"}}",
                    &id,
                ],
            ) == "lb_manager-edge"
        })),
        "an edge that is not lb_manager-edge"
    );
    assert_eq!(
        serials.len(),
        1,
        "the edges serve different certificates: {serials:?}"
    );
    assert!(
        serials.iter().all(|s| s.starts_with("serial=")),
        "{serials:?}"
    );
    let orders = pebble.orders() - orders_before;
    let ordered_on: Vec<&str> = NODES
        .into_iter()
        .filter(|n| edge_logged(n, "ordering a certificate"))
        .collect();
    println!(
        "acme, 3 manager edges: {orders} order at Pebble, placed by the edge on {ordered_on:?}"
    );
    assert_eq!(
        orders,
        1,
        "one order for three edges that may all order; Pebble's log:\n{}",
        pebble.log()
    );
    assert_eq!(ordered_on.len(), 1, "edges that ordered: {ordered_on:?}");

    // The edge that takes the next order (a second host) is killed while it holds the lease.
    let second = format!("two.{}", svc.host);
    let orders_before = pebble.orders();
    mn(
        "mn1",
        &[
            "service",
            "update",
            "--detach",
            "--quiet",
            "--label-add",
            &format!("com.docker.lb.hosts={},{second}", svc.host),
            &svc.name,
        ],
    );
    let lease = poll_until(
        CONVERGE,
        "an edge holding the new order's lease",
        || async { lease_labels(&second) },
    )
    .await;
    let holder = lease["com.docker.lb.acme.holder"].clone();
    let expires: u64 = lease["com.docker.lb.acme.expires"]
        .parse()
        .expect("the lease's expiry, unix seconds");
    let (dead_node, dead_id) =
        holder_edge(&holder).unwrap_or_else(|| panic!("the holder {holder} is no running edge"));
    mn(dead_node, &["kill", &dead_id]);
    let killed = Instant::now();
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    println!(
        "acme: killed {dead_node}'s edge ({holder}), the lease holder, mid-order; the lease \
         expires in {} s",
        expires.saturating_sub(unix(SystemTime::now()))
    );
    let living: Vec<&str> = NODES.into_iter().filter(|n| *n != dead_node).collect();
    // Meanwhile the host already certified keeps its certificate on the living edges.
    for node in &living {
        assert_eq!(
            https_verified(node, &svc.host, &root),
            200,
            "{node}: {} while the order for both hosts is pending",
            svc.host
        );
    }
    // Its node drained: Swarm starts no new edge there (a restarted edge on the dead one's node
    // could take the lease over too), so another node's edge must complete the order. Its
    // HAProxy still runs (a container, not a task) but takes no new answer. Pebble's DNS moves
    // to a living edge other than mn2 whichever edge died (as an operator repoints a name), so
    // the completed order is validated through another node than the first.
    mn_update(
        "mn1",
        &["node", "update", "--availability", "drain", dead_node],
    );
    let to = living
        .iter()
        .copied()
        .find(|n| *n != CHALLENGED_NODE)
        .expect("a living node besides mn2");
    pebble
        .set_default_ipv4(node_ip(to).parse().expect("node address"))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("acme: {dead_node} drained; Pebble's DNS now sends every name to {to}");
    let mut served_after = Vec::new();
    for node in &living {
        let done = poll_until(
            Duration::from_secs(240),
            &format!("{node} serving the order completed after the lease lapsed"),
            || async {
                (https_verified(node, &second, &root) == 200)
                    .then(|| (killed.elapsed(), unix(SystemTime::now())))
            },
        )
        .await;
        served_after.push((*node, done.0.as_secs_f64()));
        if served_after.len() == 1 {
            assert!(
                done.1 >= expires,
                "{second} served at {} before the lease expired at {expires}: the dead edge had \
                 finished the order",
                done.1
            );
        }
    }
    let orders = pebble.orders() - orders_before;
    let takers: Vec<&str> = living
        .iter()
        .copied()
        .filter(|n| edge_logged(n, "took over a lapsed order lease"))
        .collect();
    println!(
        "acme: the order completed by the edge on {takers:?} after the lease of {dead_node}'s \
         lapsed; served after the kill by {served_after:?} s (lease 120 s); {orders} orders at \
         Pebble (the dead edge's and the completed one)"
    );
    assert_eq!(
        takers.len(),
        1,
        "edges on {living:?} that took the lapsed lease over: {takers:?}"
    );
    // The dead edge's node back: its new edge serves the certificate stored meanwhile.
    let back = Instant::now();
    mn_update(
        "mn1",
        &["node", "update", "--availability", "active", dead_node],
    );
    poll_until(
        Duration::from_secs(120),
        &format!("{dead_node}'s new edge serving the completed order's certificate"),
        || async { (https_verified(dead_node, &second, &root) == 200).then_some(()) },
    )
    .await;
    println!(
        "acme: {dead_node} active again, its new edge serves it {:.1} s later",
        back.elapsed().as_secs_f64()
    );
    let serials: BTreeSet<String> = NODES
        .into_iter()
        .map(|n| served_serial(n, &second))
        .collect();
    assert_eq!(
        serials.len(),
        1,
        "the edges serve different certificates: {serials:?}"
    );
    drop(svc);
    drop(objects);
    let t1 = Instant::now();
    managers.restore();
    drop(managers);
    for node in ["mn2", "mn3"] {
        poll_until(
            CONVERGE,
            &format!("{node}'s worker edge back"),
            || async move {
                edge_container(node)
                    .filter(|id| {
                        try_mn(
                            node,
                            &[
                                "inspect",
                                "--format",
                                "{{index .Config.Labels \"com.docker.swarm.service.name\"}}",
                                id,
                            ],
                        )
                        .is_ok_and(|s| s == "lb_worker-edge")
                    })
                    .map(drop)
            },
        )
        .await;
    }
    println!(
        "mn2 and mn3 workers again, their worker edges back, {:.1} s",
        t1.elapsed().as_secs_f64()
    );
}
