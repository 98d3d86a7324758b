//! HTTPS end to end with REAL Docker secrets: the compose stack delivers them (a one-shot Swarm
//! job on swarm-lb's node copies the secrets the `ssl_cert`/`ssl_key` labels name into its
//! secrets volume), HAProxy serves the pair through the Runtime API, a rotation (new secrets, a
//! label edit) under HTTPS load fails no request and reloads nothing, and a label naming a
//! secret Docker does not have is an error that names service, label and secret while HTTP
//! routing stays. Checked with real TLS clients (`openssl s_client -servername`,
//! `curl --resolve`) on the published HTTPS port.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use swarm_lb_e2e::docker::{docker, try_docker, Network, Service};
use swarm_lb_e2e::load::HttpsLoad;
use swarm_lb_e2e::stack::Stack;
use swarm_lb_e2e::{load, poll_until, unique};

const APP1: &str = "swarm-lb/testapp:1";
/// A job's task starts and completes in a few seconds here; services take a couple to start.
const CONVERGE: Duration = Duration::from_secs(90);

/// Fails (never skips) without the TLS clients, saying how to install them.
fn require_tools() {
    swarm_lb_testkit::tls::require_tools(&["openssl", "curl"], "the TLS end-to-end test");
}

fn sh(script: &str) -> String {
    let out = Process::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A self-signed pair for `host` with serial `serial` (hex), in `dir`: (cert path, key path).
fn pair(dir: &Path, tag: &str, host: &str, serial: &str) -> (PathBuf, PathBuf) {
    swarm_lb_testkit::tls::self_signed_pair(dir, tag, host, serial)
}

/// Docker secrets created by the test, removed on drop (after the services: a secret in use
/// cannot be removed, and swarm-lb's copy jobs are gone by then).
struct Secrets(Vec<String>);

impl Secrets {
    fn create(&mut self, name: &str, file: &Path) {
        docker(&["secret", "create", name, &file.to_string_lossy()]);
        self.0.push(name.to_owned());
    }
}

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

fn served_subject(port: u16, host: &str) -> String {
    sh(&format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {host} </dev/null 2>/dev/null \
         | openssl x509 -noout -subject"
    ))
}

fn https_status(port: u16, host: &str) -> u16 {
    load::https_status(port, host, None)
}

/// Copy jobs of the stack's swarm-lb still present (there must be none once a delivery is
/// over); another stack's are not counted.
fn copy_jobs(stack: &Stack) -> String {
    docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        "label=org.swarm-lb.role=secrets-job",
        "--filter",
        &format!("label=org.swarm-lb.volume={}_secrets", stack.project),
    ])
}

/// Containers of the stack's copy jobs, exited or not (removing a job's service leaves its
/// container on Docker 20.10: swarm-lb removes it).
fn job_containers(stack: &Stack) -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.swarm-lb.volume={}_secrets", stack.project),
    ])
}

/// Files of the stack's secrets volume on the host: (name, mode).
fn volume_files(project: &str) -> (u32, Vec<(String, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    let root = try_docker(&["info", "--format", "{{.DockerRootDir}}"])
        .unwrap_or_else(|_| "/var/lib/docker".to_owned());
    let dir = Path::new(&root)
        .join("volumes")
        .join(format!("{project}_secrets"))
        .join("_data");
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    let mut files: Vec<(String, u32)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        mode(&e.path()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    (mode(&dir), files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_docker_secrets_is_served_and_rotated_under_https_load_with_no_reload() {
    require_tools();
    let cluster = unique("c");
    // A short resync: Docker's secret list is read again that often, which is when a secret
    // recreated under the same name is seen.
    let stack = Stack::up(&[
        ("SWARM_LB_SERVICE_CLUSTER", cluster.as_str()),
        ("SWARM_LB_RESYNC", "3"),
    ])
    .await;
    let net = Network::create(&unique("tlsnet"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = format!("{}.test", unique("tls"));
    let mut secrets = Secrets(Vec::new());
    let (crt1, key1) = (unique("crt1"), unique("key1"));
    let (c1, k1) = pair(tmp.path(), "one", &host, "5EC1");
    secrets.create(&crt1, &c1);
    secrets.create(&key1, &k1);

    let labels = [
        format!("com.docker.lb.hosts={host}"),
        "com.docker.lb.port=8080".to_owned(),
        format!("com.docker.lb.service_cluster={cluster}"),
        format!("com.docker.lb.ssl_cert={crt1}"),
        format!("com.docker.lb.ssl_key={key1}"),
    ];
    let mut args: Vec<&str> = vec!["--network", &net.name, "--replicas", "2"];
    for l in &labels {
        args.push("--label");
        args.push(l);
    }
    let svc = Service::create(&unique("svc"), APP1, &args);
    let port = stack.https_port;
    let started = Instant::now();
    poll_until(
        CONVERGE,
        "the first certificate served over HTTPS",
        || async {
            (load::served_serial(port, &host) == "serial=5EC1" && https_status(port, &host) == 200)
                .then_some(())
        },
    )
    .await;
    let first = started.elapsed();
    assert_eq!(served_subject(port, &host), format!("subject=CN = {host}"));
    poll_until(
        CONVERGE,
        "the copy job and its container removed",
        || async {
            (copy_jobs(&stack).is_empty() && job_containers(&stack).is_empty()).then_some(())
        },
    )
    .await;
    let (dir_mode, files) = volume_files(&stack.project);
    assert_eq!(dir_mode, 0o700, "the secrets directory: {files:?}");
    for (name, mode) in &files {
        assert_eq!(*mode, 0o600, "{name} must be 0600: {files:?}");
    }
    assert!(files.iter().any(|(n, _)| n == &key1), "{files:?}");

    // Rotation under HTTPS load: new secrets, the labels pointed at them.
    let reloads = stack.reloads().await;
    let (crt2, key2) = (unique("crt2"), unique("key2"));
    let (c2, k2) = pair(tmp.path(), "two", &host, "5EC2");
    secrets.create(&crt2, &c2);
    secrets.create(&key2, &k2);
    let https_load = HttpsLoad::start(port, &host, 2, None);
    // Some requests before the change.
    poll_until(CONVERGE, "HTTPS load running", || async {
        (https_load.ok.load(Ordering::SeqCst) >= 10).then_some(())
    })
    .await;
    let rotated = Instant::now();
    // Detached: the time to the new certificate is swarm-lb's, not the CLI's convergence wait.
    docker(&[
        "service",
        "update",
        "--detach",
        "--quiet",
        "--label-add",
        &format!("com.docker.lb.ssl_cert={crt2}"),
        "--label-add",
        &format!("com.docker.lb.ssl_key={key2}"),
        &svc.name,
    ]);
    poll_until(CONVERGE, "the new certificate served", || async {
        (load::served_serial(port, &host) == "serial=5EC2").then_some(())
    })
    .await;
    let to_new_cert = rotated.elapsed();
    // Requests after the change too.
    let after = https_load.ok.load(Ordering::SeqCst) + 50;
    poll_until(CONVERGE, "HTTPS load after the rotation", || async {
        (https_load.ok.load(Ordering::SeqCst) >= after).then_some(())
    })
    .await;
    let (requests, failed) = https_load.stop();
    let reloads = stack.reloads().await - reloads;
    poll_until(CONVERGE, "the old copies deleted", || async {
        let (_, files) = volume_files(&stack.project);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        (!names.contains(&crt1.as_str())
            && !names.contains(&key1.as_str())
            && names.contains(&key2.as_str()))
        .then_some(())
    })
    .await;

    // The same names, removed and created again with another pair (new Docker IDs): copied
    // again without any label change.
    let recreated = Instant::now();
    let (c3, k3) = pair(tmp.path(), "three", &host, "5EC3");
    for (name, file) in [(&crt2, &c3), (&key2, &k3)] {
        docker(&["secret", "rm", name]);
        docker(&["secret", "create", name, &file.to_string_lossy()]);
    }
    poll_until(CONVERGE, "the recreated secrets served", || async {
        (load::served_serial(port, &host) == "serial=5EC3").then_some(())
    })
    .await;
    let to_recreated = recreated.elapsed();

    // A label naming a secret Docker does not have: an error naming service, label, secret;
    // HTTP routing and the served certificate stay.
    let missing = unique("nosuch");
    svc.update(&["--label-add", &format!("com.docker.lb.ssl_key={missing}")]);
    let expected = format!(
        "service {}: label com.docker.lb.ssl_key=\"{missing}\"",
        svc.name
    );
    let logged = poll_until(CONVERGE, "the missing secret's error", || async {
        let log = stack.swarm_lb_log();
        log.lines()
            .find(|l| l.contains(&expected) && l.contains("Docker lists no secret"))
            .map(str::to_owned)
    })
    .await;
    let (code, _) = load::get(stack.http_port, &host, "/").await.expect("HTTP");
    assert_eq!(code, 200, "HTTP routing kept");
    assert_eq!(
        load::served_serial(port, &host),
        "serial=5EC3",
        "the last good pair stays"
    );
    assert!(
        copy_jobs(&stack).is_empty(),
        "no job for a secret Docker lacks"
    );
    poll_until(CONVERGE, "no job container left", || async {
        job_containers(&stack).is_empty().then_some(())
    })
    .await;

    let log = stack.swarm_lb_log();
    assert!(!log.contains("PRIVATE KEY"), "a key in the log");
    let status = sh(&format!(
        "curl -s --max-time 5 http://127.0.0.1:{}/status",
        stack.metrics_port
    ));
    assert!(
        !status.is_empty() && !status.contains("PRIVATE KEY"),
        "{status}"
    );
    let jobs = log.matches("secrets copy job created").count();
    println!("missing secret: {logged}");
    println!(
        "FIGURES tls-secrets: first certificate {} ms, requests {requests}, failed {failed}, reloads {reloads}, time to new cert {} ms, same names recreated served in {} ms, copy jobs {jobs}",
        first.as_millis(),
        to_new_cert.as_millis(),
        to_recreated.as_millis()
    );
    assert!(requests >= 20, "{requests} requests");
    assert_eq!(failed, 0, "HTTPS requests failed during the rotation");
    assert_eq!(reloads, 0, "a rotation must not reload HAProxy");
    assert_eq!(
        jobs, 3,
        "one job per delivery: the first pair, the rotated pair, the recreated pair"
    );
    drop(svc);
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_copy_job_is_an_error_naming_the_secrets_retried_with_backoff_one_job_at_a_time()
{
    require_tools();
    let cluster = unique("c");
    // An image that exists nowhere: the job's task is rejected.
    let stack = Stack::up(&[
        ("SWARM_LB_SERVICE_CLUSTER", cluster.as_str()),
        ("SWARM_LB_SECRETS_JOB_IMAGE", "swarm-lb/no-such-image:0"),
        ("SWARM_LB_SECRETS_JOB_TIMEOUT", "20"),
    ])
    .await;
    let net = Network::create(&unique("tlsnet"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = format!("{}.test", unique("fail"));
    let mut secrets = Secrets(Vec::new());
    let (crt, key) = (unique("fcrt"), unique("fkey"));
    let (c, k) = pair(tmp.path(), "f", &host, "FA11");
    secrets.create(&crt, &c);
    secrets.create(&key, &k);
    let labels = [
        format!("com.docker.lb.hosts={host}"),
        "com.docker.lb.port=8080".to_owned(),
        format!("com.docker.lb.service_cluster={cluster}"),
        format!("com.docker.lb.ssl_cert={crt}"),
        format!("com.docker.lb.ssl_key={key}"),
    ];
    let mut args: Vec<&str> = vec!["--network", &net.name];
    for l in &labels {
        args.push("--label");
        args.push(l);
    }
    let svc = Service::create(&unique("svc"), APP1, &args);
    let started = Instant::now();
    let mut most_jobs = 0;
    let failed_line = poll_until(CONVERGE, "the failed job's error, retried", || {
        // Never more than one job at a time.
        most_jobs = most_jobs.max(copy_jobs(&stack).lines().count());
        let log = stack.swarm_lb_log();
        let line = log
            .lines()
            .find(|l| l.contains("secrets delivery failed") && l.contains(&crt) && l.contains(&key))
            .map(str::to_owned);
        let label_error = log.lines().any(|l| {
            l.contains(&format!(
                "service {}: label com.docker.lb.ssl_cert=\"{crt}\"",
                svc.name
            )) && l.contains("could not be copied")
        });
        let retried = log.matches("secrets copy job created").count() >= 2;
        async move { line.filter(|_| label_error && retried) }
    })
    .await;
    let took = started.elapsed();
    poll_until(CONVERGE, "HTTP routing kept (the task started)", || async {
        matches!(load::get(stack.http_port, &host, "/").await, Ok((200, _))).then_some(())
    })
    .await;
    assert_ne!(load::served_serial(stack.https_port, &host), "serial=FA11");
    let jobs = stack
        .swarm_lb_log()
        .matches("secrets copy job created")
        .count();
    drop(svc);
    poll_until(
        CONVERGE,
        "no copy job left once no label names a secret",
        || async { copy_jobs(&stack).is_empty().then_some(()) },
    )
    .await;
    println!("failed job: {failed_line}");
    println!(
        "FIGURES tls-secrets-failing-job: jobs {jobs} in {} ms, at most {most_jobs} at a time",
        took.as_millis()
    );
    assert!(most_jobs <= 1, "{most_jobs} copy jobs at once");
    assert!(
        failed_line.contains("No such image") || failed_line.contains("no-such-image"),
        "the task's error is named: {failed_line}"
    );
    drop(net);
}
