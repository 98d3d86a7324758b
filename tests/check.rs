//! `swarm-lb check` (the built binary) against the real engine in Swarm mode: services with
//! good, refused and Interlock-era labels, their verdicts in text and JSON, the exit status,
//! and that the check neither talks to HAProxy nor writes a file.
//!
//! Needs dockerd running as a Swarm manager and `/usr/bin/docker`, and the test image
//! (`scripts/test-images.sh`). The services run no task (`--replicas 0`). Each is labelled with
//! a service cluster of this test's own, and every check is run with `--service-cluster`, so
//! that other services on the engine (other tests') are `ignored` and cannot change an exit
//! status. Everything is named after the pid and removed on drop.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const DOCKER: &str = "/usr/bin/docker";
const IMAGE: &str = "swarm-lb-test/busybox:1";
const UNREACHABLE: &str =
    "Docker engine not reachable: install docker.io and start dockerd (see README)";

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(DOCKER)
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {DOCKER} ({e}): {UNREACHABLE}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Swarm and the test image, or a failure that says how to get them.
fn engine() {
    let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).expect(UNREACHABLE);
    assert_eq!(
        state, "active",
        "this engine is not in a Swarm: run `docker swarm init --advertise-addr 127.0.0.1`"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-images.sh");
    let out = Command::new("sh")
        .arg(script)
        .output()
        .expect("run scripts/test-images.sh");
    assert!(
        out.status.success(),
        "scripts/test-images.sh failed (apt-get install -y busybox-static?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test's services and network, removed on drop (services first).
#[derive(Default)]
struct Cleanup {
    services: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for s in &self.services {
            let _ = docker(&["service", "rm", s]);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &self.networks {
            while docker(&["network", "rm", n]).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A service with `labels` on `net`, no task.
fn service(cleanup: &mut Cleanup, name: &str, net: &str, labels: &[(&str, &str)]) {
    let _ = docker(&["service", "rm", name]);
    let mut args = vec![
        "service".to_owned(),
        "create".to_owned(),
        "--detach".to_owned(),
        "--no-resolve-image".to_owned(),
        "--replicas=0".to_owned(),
        format!("--name={name}"),
        format!("--network={net}"),
    ];
    for (k, v) in labels {
        args.push(format!("--label={k}={v}"));
    }
    args.push(IMAGE.to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args).expect("service create");
    cleanup.services.push(name.to_owned());
}

/// `swarm-lb check` with `args`, its environment cleared of swarm-lb's and Docker's
/// variables but for the HAProxy and file paths in `env`, run in `dir`.
fn check(args: &[&str], env: &[(&str, &Path)], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm-lb"));
    cmd.arg("check").args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("SWARM_LB_") || k == "DOCKER_HOST" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run swarm-lb check")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The entries of `dir`, recursively, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        out.push(path.display().to_string());
        if path.is_dir() {
            out.extend(tree(&path));
        }
    }
    out.sort();
    out
}

#[test]
fn check_reports_good_refused_and_interlock_labels_and_touches_neither_haproxy_nor_a_file() {
    let started = Instant::now();
    engine();
    let pid = std::process::id();
    let mut cleanup = Cleanup::default();
    let net = format!("swlbt-check-{pid}");
    let _ = docker(&["network", "rm", &net]);
    docker(&["network", "create", "-d", "overlay", "--attachable", &net]).expect("network");
    cleanup.networks.push(net.clone());
    // Two clusters of this test's own: one all routable, one with a refusal.
    let (ok, bad) = (format!("chk-ok-{pid}"), format!("chk-bad-{pid}"));
    let cluster = "com.docker.lb.service_cluster";
    let good = format!("chk-good-{pid}");
    let good_host = format!("good-{pid}.example");
    service(
        &mut cleanup,
        &good,
        &net,
        &[
            ("com.docker.lb.hosts", &good_host),
            ("com.docker.lb.port", "8080"),
            ("com.docker.lb.context_root", "/app"),
            (cluster, &ok),
        ],
    );
    let vip = format!("chk-vip-{pid}");
    let vip_host = format!("vip-{pid}.example");
    service(
        &mut cleanup,
        &vip,
        &net,
        &[
            ("com.docker.lb.hosts", &vip_host),
            ("com.docker.lb.port", "8080"),
            ("com.docker.lb.backend_mode", "vip"),
            ("com.docker.lb.sticky_session_cookie", "session"),
            ("com.docker.lb.websocket_endpoints", "/ws"),
            (cluster, &ok),
        ],
    );
    let interlock = format!("ucp-interlock-proxy-chk-{pid}");
    service(&mut cleanup, &interlock, &net, &[]);
    let refused = format!("chk-refused-{pid}");
    let refused_host = format!("refused-{pid}.example");
    service(
        &mut cleanup,
        &refused,
        &net,
        &[
            ("com.docker.lb.hosts", &refused_host),
            ("com.docker.lb.port", "0"),
            (cluster, &bad),
        ],
    );

    // HAProxy's sockets, listening, and the config and secrets paths, all in an empty dir the
    // check runs in: the check must connect to neither socket and add nothing to the dir.
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin.sock");
    let master = dir.path().join("master.sock");
    let (admin_l, master_l) = (
        UnixListener::bind(&admin).expect("admin socket"),
        UnixListener::bind(&master).expect("master socket"),
    );
    let config = dir.path().join("config");
    let secrets = dir.path().join("secrets");
    let env = [
        ("SWARM_LB_ADMIN_SOCKET", admin.as_path()),
        ("SWARM_LB_MASTER_SOCKET", master.as_path()),
        ("SWARM_LB_CONFIG_DIR", config.as_path()),
        ("SWARM_LB_SECRETS_DIR", secrets.as_path()),
    ];
    let before = tree(dir.path());

    let out = check(&["--service-cluster", &ok], &env, dir.path());
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}{:?}", out.stderr);
    assert!(
        report.contains(&format!(
            "routed    {good}: {good_host} -> port 8080, mode task, network {net}, backend {good}"
        )),
        "{report}"
    );
    assert!(report.contains("  options: context_root=/app"), "{report}");
    assert!(
        report.contains(&format!(
            "routed    {vip}: {vip_host} -> port 8080, mode vip, network {net}"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "  warning: service {vip}: label com.docker.lb.sticky_session_cookie is not offered in vip mode"
        )),
        "{report}"
    );
    for label in [
        "backend_mode",
        "sticky_session_cookie",
        "websocket_endpoints",
        "context_root",
    ] {
        assert!(
            report.contains(&format!(
                "  changed from Interlock: com.docker.lb.{label}: "
            )),
            "{label}: {report}"
        );
    }
    assert!(
        report.contains(&format!("interlock {interlock}: Interlock's own service")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "ignored   {refused}: {cluster}=\"{bad}\": served by the swarm-lb started with --service-cluster \"{bad}\""
        )),
        "{report}"
    );
    assert!(
        report.contains("#   ServiceCluster -> --service-cluster"),
        "{report}"
    );

    // Warnings count with --strict (the vip service's ignored cookie).
    let out = check(&["--service-cluster", &ok, "--strict"], &env, dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // The refused service: the daemon's own error text, exit 1; JSON the same.
    let out = check(&["--service-cluster", &bad], &env, dir.path());
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let error = format!(
        "service {refused}: label com.docker.lb.port=\"0\": port 0 cannot be connected to: use 1..=65535"
    );
    assert!(
        report.contains(&format!("refused   {refused}\n  error: {error}\n")),
        "{report}"
    );
    let out = check(&["--service-cluster", &bad, "--json"], &env, dir.path());
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let entries = json.as_array().expect("an array");
    let entry = |name: &str| -> &serde_json::Value {
        entries
            .iter()
            .find(|e| e["service"] == name)
            .unwrap_or_else(|| panic!("{name} in {json:#}"))
    };
    assert_eq!(entry(&refused)["verdict"], "refused");
    assert_eq!(entry(&refused)["refused"], serde_json::json!([error]));
    assert_eq!(entry(&good)["verdict"], "ignored");
    assert_eq!(entry(&interlock)["verdict"], "interlock");
    let out = check(&["--service-cluster", &ok, "--json"], &env, dir.path());
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let good_entry = json
        .as_array()
        .and_then(|a| a.iter().find(|e| e["service"] == good.as_str()))
        .expect("the good service");
    assert_eq!(good_entry["verdict"], "routed");
    assert_eq!(good_entry["hosts"], serde_json::json!([good_host]));
    assert_eq!(good_entry["mode"], "task");
    assert_eq!(good_entry["network"], net.as_str());
    assert_eq!(good_entry["port"], 8080);

    // Nothing reached HAProxy's sockets, nothing was written.
    for (name, listener) in [("admin", &admin_l), ("master", &master_l)] {
        listener.set_nonblocking(true).expect("nonblocking");
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the check connected to the {name} socket: {other:?}"),
        }
    }
    assert_eq!(tree(dir.path()), before, "the check wrote in its directory");
    assert!(!config.exists() && !secrets.exists());

    // Docker away: exit 2, the error on stderr, nothing on stdout.
    let away = dir.path().join("no-docker.sock");
    let out = check(
        &["--docker", &format!("unix://{}", away.display())],
        &env,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("swarm-lb check: connecting to Docker"),
        "{out:?}"
    );
    eprintln!("check test took {:?}", started.elapsed());
}
