//! TLS at the edge against a real HAProxy: certificates added, rotated and removed through the
//! Runtime API (`ssl cert`, `ssl crt-list`) with no reload, checked with real TLS clients
//! (`openssl s_client -servername`, `curl --resolve`); the files mirror them so a reload serves
//! the same; HTTP/2 through ALPN; the default certificate for unknown names; the `ssl_only`
//! redirect as a map entry.

mod support;

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use support::{poll_until, reloads, Haproxy};
use swarm_lb::haproxy::tls::{self, CertFiles};
use swarm_lb::haproxy::{AdminClient, CertPath, Command, Pem, ProxyState};
use swarm_lb::model::{MapKey, MapValue};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `sh -c script`; a missing tool is an install message, never a skip.
fn sh(script: &str) -> String {
    swarm_lb_testkit::tls::require_tools(&["openssl", "curl"], "the TLS tests");
    let out = Process::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subject and serial of the certificate HAProxy serves on `port` for SNI `name`
/// (`subject=CN = a.example`, `serial=...`), or empty when the handshake failed.
fn served(port: u16, name: &str) -> String {
    sh(&format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null \
         | openssl x509 -noout -subject -serial"
    ))
}

/// The subject and serial of the first certificate in a PEM.
fn of_pem(pem: &Pem) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.pem");
    std::fs::write(&path, pem.as_str()).expect("write pem");
    sh(&format!(
        "openssl x509 -noout -subject -serial -in {}",
        path.display()
    ))
}

fn pem_for(name: &str) -> Pem {
    tls::self_signed(&[name.to_owned()]).expect("self-signed certificate")
}

/// Push `pem` as `name`'s certificate the way the driver does: Runtime API first, then the
/// files (certificate 0600, crt-list).
async fn push(client: &mut AdminClient, certs: &CertFiles, name: &str, pem: &Pem, fresh: bool) {
    let info = client.info().await.expect("show info");
    let list = certs.crt_list().expect("crt-list path");
    let cert = certs.cert(name).expect("cert path");
    let cmds = tls::push_commands(&list, &cert, pem.clone(), fresh, info.version)
        .expect("fits the payload limit");
    for reply in client.execute(&cmds).await.expect("exchange") {
        reply.expect("HAProxy accepts the certificate command");
    }
    certs.write_cert(&cert, pem).expect("write cert");
    certs.write_crt_list([&cert]).expect("write crt-list");
}

async fn wait_served(port: u16, name: &str, want: &str) {
    poll_until(
        Duration::from_secs(5),
        "the certificate to be served",
        || async { (served(port, name) == want).then_some(()) },
    )
    .await;
}

fn https(haproxy: &Haproxy) -> (u16, &CertFiles) {
    let (port, certs) = haproxy.https.as_ref().expect("started with HTTPS");
    (*port, certs)
}

#[tokio::test]
async fn a_certificate_is_added_rotated_and_removed_at_runtime_without_a_reload() {
    let haproxy = Haproxy::start_https(&ProxyState::default()).await;
    let (port, certs) = https(&haproxy);
    let master = haproxy.master();
    let before = reloads(&master).await;
    let mut client = AdminClient::new(haproxy.admin_socket());
    let default = served(port, "a.example");
    assert!(
        default.contains("swarm-lb.invalid"),
        "the default certificate before any is added: {default:?}"
    );

    let first = pem_for("a.example");
    push(&mut client, certs, "web", &first, true).await;
    wait_served(port, "a.example", &of_pem(&first)).await;

    let second = pem_for("a.example");
    assert_ne!(of_pem(&first), of_pem(&second), "a new serial");
    push(&mut client, certs, "web", &second, false).await;
    wait_served(port, "a.example", &of_pem(&second)).await;

    let cert = certs.cert("web").expect("cert path");
    let list = certs.crt_list().expect("crt-list");
    for reply in client
        .execute(&tls::remove_commands(&list, &cert))
        .await
        .expect("exchange")
    {
        reply.expect("HAProxy removes the certificate");
    }
    wait_served(port, "a.example", &default).await;
    assert_eq!(reloads(&master).await, before, "no reload");
}

#[tokio::test]
async fn a_reload_serves_the_certificates_pushed_at_runtime_from_their_files() {
    let haproxy = Haproxy::start_https(&ProxyState::default()).await;
    let (port, certs) = https(&haproxy);
    let mut client = AdminClient::new(haproxy.admin_socket());
    let pem = pem_for("a.example");
    push(&mut client, certs, "web", &pem, true).await;
    wait_served(port, "a.example", &of_pem(&pem)).await;
    client.disconnect();

    haproxy
        .master()
        .reload(RELOAD_TIMEOUT)
        .await
        .expect("reload");

    wait_served(port, "a.example", &of_pem(&pem)).await;
}

#[tokio::test]
async fn an_unknown_name_gets_the_default_certificate() {
    let haproxy = Haproxy::start_https(&ProxyState::default()).await;
    let (port, certs) = https(&haproxy);
    let mut client = AdminClient::new(haproxy.admin_socket());
    let pem = pem_for("a.example");
    push(&mut client, certs, "web", &pem, true).await;
    wait_served(port, "a.example", &of_pem(&pem)).await;

    let other = served(port, "b.example");
    assert!(other.contains("swarm-lb.invalid"), "{other:?}");
}

#[tokio::test]
async fn http2_is_negotiated_through_alpn_on_the_https_bind() {
    let haproxy = Haproxy::start_https(&ProxyState::default()).await;
    let (port, _) = https(&haproxy);
    let out = sh(&format!(
        "curl -sk --http2 --resolve a.example:{port}:127.0.0.1 \
         -o /dev/null -w '%{{http_version}} %{{http_code}}' https://a.example:{port}/"
    ));
    // No service is routed: the template's 503, over HTTP/2.
    assert_eq!(out, "2 503");
}

#[tokio::test]
async fn an_ssl_only_host_is_redirected_to_https_by_a_map_entry_and_served_over_https() {
    let haproxy = Haproxy::start_https(&ProxyState::default()).await;
    let (port, _) = https(&haproxy);
    let http = haproxy.http_port;
    let get = |scheme: &str, port: u16| {
        sh(&format!(
            "curl -sk --resolve a.example:{port}:127.0.0.1 -o /dev/null \
             -w '%{{http_code}} %{{redirect_url}}' {scheme}://a.example:{port}/x?y=1"
        ))
    };
    assert!(get("http", http).starts_with("503"), "no redirect yet");

    let key = MapKey::https_only(&swarm_lb::model::Host::parse("a.example").expect("host"));
    let value = MapValue::https_only();
    let mut client = AdminClient::new(haproxy.admin_socket());
    let cmd = Command::AddMap {
        map: haproxy.hosts_map().clone(),
        key,
        value,
    };
    for reply in client.execute(&[cmd]).await.expect("exchange") {
        reply.expect("add map");
    }

    assert_eq!(
        get("http", http),
        format!("301 https://a.example:{http}/x?y=1")
    );
    assert!(
        get("https", port).starts_with("503"),
        "HTTPS is not redirected"
    );
}

#[tokio::test]
async fn a_chain_over_the_payload_limit_is_refused_with_a_clear_error_or_loads_from_3_4() {
    let haproxy = Haproxy::start_https(&ProxyState::default()).await;
    let (port, certs) = https(&haproxy);
    let mut client = AdminClient::new(haproxy.admin_socket());
    let version = client.info().await.expect("show info").version;
    // A 20 KB chain: the leaf, 40 copies of an intermediate, then the leaf's key.
    let leaf = pem_for("big.example");
    let filler = pem_for("intermediate.example");
    let filler_cert = filler
        .as_str()
        .split("-----END CERTIFICATE-----")
        .next()
        .expect("cert part")
        .to_owned()
        + "-----END CERTIFICATE-----\n";
    let (leaf_cert, leaf_key) = leaf
        .as_str()
        .split_once("-----END CERTIFICATE-----")
        .expect("cert then key");
    let text = format!(
        "{leaf_cert}-----END CERTIFICATE-----\n{}{leaf_key}",
        filler_cert.repeat(40)
    );
    let big = Pem::new(&text).expect("pem");
    assert!(big.len() > tls::LINE_LIMIT_BEFORE_3_4);
    let list = certs.crt_list().expect("crt-list");
    let cert: CertPath = certs.cert("big").expect("cert path");
    match tls::push_commands(&list, &cert, big, true, version) {
        Err(error) => {
            assert!((version.major, version.minor) < (3, 4), "{version:?}");
            assert!(error.to_string().contains("tune.bufsize"), "{error}");
            // The connection is still usable: nothing was sent.
            client.info().await.expect("the admin socket still answers");
        }
        Ok(cmds) => {
            assert!((version.major, version.minor) >= (3, 4), "{version:?}");
            for reply in client.execute(&cmds).await.expect("exchange") {
                reply.expect("HAProxy 3.4 takes a 20 KB chain");
            }
            let served = served(port, "big.example");
            assert!(served.contains("big.example"), "{served:?}");
        }
    }
}

/// A TLS server on loopback standing in for a task that serves HTTPS itself: `openssl s_server
/// -www` (answers any GET with `HTTP/1.0 200 ok` and a status page) on a free port, with a
/// certificate for `name` issued by a CA of its own (`ca`). Killed on drop.
struct TlsTask {
    child: std::process::Child,
    port: u16,
    pem: Pem,
    ca: String,
    _dir: tempfile::TempDir,
}

/// A CA certificate (PEM) and a leaf for `name` it signed (certificate then key).
fn issued(name: &str) -> (String, Pem) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "swarm-lb test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let leaf = params.signed_by(&key, &issuer).expect("leaf");
    let pem = Pem::new(&format!("{}{}", leaf.pem(), key.serialize_pem())).expect("pem");
    (ca_cert.pem(), pem)
}

impl TlsTask {
    async fn start(name: &str) -> TlsTask {
        sh("true"); // the tool check
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, pem) = issued(name);
        let path = dir.path().join("task.pem");
        std::fs::write(&path, format!("{}\n", pem.as_str())).expect("write task pem");
        let port = support::free_port();
        let child = Process::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&path)
            .arg("-key")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server (apt-get install openssl)");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        poll_until(
            Duration::from_secs(5),
            "openssl s_server to listen",
            || async { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
        )
        .await;
        TlsTask {
            child,
            port,
            pem,
            ca,
            _dir: dir,
        }
    }
    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for TlsTask {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A state routing `web.example` to `task` over TLS, verifying or not.
fn tls_backend_state(task: &TlsTask, verify: bool) -> ProxyState {
    let mut state = ProxyState::default();
    let mut backend = support::task_backend(&[task.addr()], 2);
    backend.options.backend_tls = Some(swarm_lb::model::BackendTls { verify });
    support::route(&mut state, "web", backend, &["web.example"]);
    state
}

fn status_of(port: u16, host: &str) -> String {
    sh(&format!(
        "curl -s --max-time 5 -o /dev/null -w '%{{http_code}}' -H 'Host: {host}' http://127.0.0.1:{port}/"
    ))
}

#[tokio::test]
async fn ssl_backend_without_verification_reaches_a_task_serving_a_self_signed_certificate() {
    let task = TlsTask::start("task.example").await;
    let haproxy = Haproxy::start(&tls_backend_state(&task, false)).await;
    let http = haproxy.http_port;
    poll_until(
        Duration::from_secs(10),
        "HAProxy to reach the TLS task",
        || async { (status_of(http, "web.example") == "200").then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn ssl_backend_with_verification_refuses_a_task_whose_certificate_does_not_verify() {
    let task = TlsTask::start("task.example").await;
    let haproxy = Haproxy::start(&tls_backend_state(&task, true)).await;
    let http = haproxy.http_port;
    // The task answers TLS (the same task reached without verification answers 200 in the
    // test above); with verification on, its self-signed certificate fails every handshake.
    assert_eq!(status_of(http, "web.example"), "503");
    let config = std::fs::read_to_string(haproxy.config_path()).expect("config");
    assert!(
        config.contains("default-server ssl verify required ca-file "),
        "{config}"
    );
}

#[tokio::test]
async fn ssl_backend_with_verification_reaches_a_task_whose_certificate_the_ca_bundle_trusts() {
    // Named after the routed host: from 3.3 HAProxy sends the Host header as SNI to servers
    // and verifies the certificate against it (measured on 3.4.7: a task certificate for
    // another name fails there, and passes on 2.6 to 3.2).
    let task = TlsTask::start("web.example").await;
    // The CA that issued the task's certificate as the bundle: its chain verifies.
    let haproxy = Haproxy::start_trusting(&tls_backend_state(&task, true), &task.ca).await;
    let http = haproxy.http_port;
    poll_until(
        Duration::from_secs(10),
        "HAProxy to reach the verified task",
        || async { (status_of(http, "web.example") == "200").then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn passthrough_hands_tls_for_its_name_to_the_task_untouched_and_others_are_terminated() {
    let task = TlsTask::start("pt.example").await;
    let mut state = ProxyState::default();
    let mut backend = support::task_backend(&[task.addr()], 2);
    backend.options.passthrough = true;
    let name = support::backend_name("pt");
    state.hosts.insert(
        MapKey::passthrough(&swarm_lb::model::Host::parse("pt.example").expect("host")),
        MapValue::backend(&name, 0),
    );
    state.backends.insert(name, std::sync::Arc::new(backend));
    let haproxy = Haproxy::start_https(&state).await;
    let (port, _) = https(&haproxy);

    // The task's own certificate: HAProxy did not terminate.
    wait_served(port, "pt.example", &of_pem(&task.pem)).await;
    let page = sh(&format!(
        "curl -sk --max-time 5 --resolve pt.example:{port}:127.0.0.1 https://pt.example:{port}/"
    ));
    assert!(page.contains("s_server"), "the task's own page: {page:?}");
    // Any other name is terminated by HAProxy (default certificate, the template's 503).
    assert!(served(port, "other.example").contains("swarm-lb.invalid"));
    let other = sh(&format!(
        "curl -sk --max-time 5 -o /dev/null -w '%{{http_code}}' --resolve other.example:{port}:127.0.0.1 https://other.example:{port}/"
    ));
    assert_eq!(other, "503");
}

// ---- the whole driver: labels -> Reconciler pass -> Runtime API, no reload ----

mod driver {
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;
    use support::Backend;

    use swarm_lb::model::{DesiredTaskState, Service, Snapshot, Task, TaskAddress, TaskState};

    use swarm_lb::reconcile::tls::TlsCerts;
    use swarm_lb::reconcile::Reconciler;

    const NET: &str = "net-1";

    fn service(port: u16, labels: &[(&str, &str)]) -> Service {
        let mut all: BTreeMap<String, String> = BTreeMap::new();
        all.insert("com.docker.lb.hosts".into(), "a.example".into());
        all.insert("com.docker.lb.port".into(), port.to_string());
        for (k, v) in labels {
            all.insert((*k).to_owned(), (*v).to_owned());
        }
        Service {
            id: "id-web".into(),
            name: "web".into(),
            labels: all,
            networks: vec![NET.to_owned()],
            vips: vec![],
        }
    }

    fn snapshot(service: Service, n: u8) -> Snapshot {
        Snapshot {
            services: vec![std::sync::Arc::new(service)],
            tasks: vec![std::sync::Arc::new(Task {
                id: "task-web-1".into(),
                service_id: "id-web".into(),
                slot: Some(1),
                state: TaskState::Running,
                desired_state: DesiredTaskState::Running,
                addresses: vec![TaskAddress {
                    network: NET.to_owned(),
                    addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)),
                }],
            })],
            networks: vec![support::front_network(NET)],
        }
    }

    fn reconciler(haproxy: &Haproxy, secrets: &std::path::Path) -> Reconciler {
        let (_, certs) = https(haproxy);
        support::driver(haproxy, 4, true).with_tls(TlsCerts::new(certs.clone(), secrets))
    }

    /// Writes a certificate/key pair for `names` as secrets `<name>-crt` and `<name>-key`.
    fn secret_pair(dir: &std::path::Path, name: &str, names: &[&str]) -> Pem {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let pem = tls::self_signed(&names).expect("pair");
        let (cert, key) = pem
            .as_str()
            .split_once("-----END CERTIFICATE-----")
            .expect("cert then key");
        std::fs::write(
            dir.join(format!("{name}-crt")),
            format!("{cert}-----END CERTIFICATE-----\n"),
        )
        .expect("write cert secret");
        std::fs::write(dir.join(format!("{name}-key")), key.trim_start()).expect("key secret");
        pem
    }

    /// The reloads a routed service's creation costs on the HAProxy under test: 1 before 3.4,
    /// 0 from 3.4 (created through the Runtime API).
    async fn reloads_per_backend(haproxy: &Haproxy) -> u32 {
        let v = AdminClient::new(haproxy.admin_socket())
            .info()
            .await
            .expect("show info")
            .version;
        u32::from((v.major, v.minor) < (3, 4))
    }

    // Multi-threaded: curl blocks a thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_to_the_tasks_and_passthrough_come_at_runtime_from_3_4_and_reach_the_tls_task() {
        // Named after the routed host: from 3.3 HAProxy verifies the task's certificate
        // against the Host it sends as SNI.
        let task = TlsTask::start("a.example").await;
        let haproxy = Haproxy::start_https_trusting(&ProxyState::default(), &task.ca).await;
        let per = reloads_per_backend(&haproxy).await;
        let (https_port, _) = https(&haproxy);
        let secrets = tempfile::tempdir().expect("secrets dir");
        let mut driver = reconciler(&haproxy, secrets.path());
        let master = haproxy.master();
        let http = haproxy.http_port;
        let before = reloads(&master).await;

        // TLS to the task, verified against the CA bundle: `add server ... ssl verify
        // required ca-file <bundle>` finds the bundle in HAProxy's CA store.
        let verified = snapshot(
            service(task.port, &[("com.docker.lb.ssl_backend", "true")]),
            1,
        );
        driver.pass(&verified).await.expect("pass");
        assert_eq!(
            reloads(&master).await,
            before + per,
            "ssl_backend service created"
        );
        poll_until(
            Duration::from_secs(10),
            "HAProxy to reach the verified task",
            || async { (status_of(http, "a.example") == "200").then_some(()) },
        )
        .await;

        // The same service passed through instead: from 3.4 a new backend generation from
        // the TCP defaults, the map switched to it, the old one deleted.
        let passed = snapshot(
            service(task.port, &[("com.docker.lb.ssl_passthrough", "true")]),
            1,
        );
        driver.pass(&passed).await.expect("pass");
        assert_eq!(
            reloads(&master).await,
            before + 2 * per,
            "passthrough is an options change"
        );
        wait_served(https_port, "a.example", &of_pem(&task.pem)).await;
        let again = driver.pass(&passed).await.expect("pass");
        assert!(!again.changed(), "{again:?}");
        driver.flush().await.expect("files");
        let config = std::fs::read_to_string(haproxy.config_path()).expect("config");
        let serving = if per == 0 { "web:2" } else { "web" };
        assert!(
            config.contains(&format!("backend {serving} from swarm-lb.tcp.roundrobin\n")),
            "{config}"
        );
    }

    // Multi-threaded: the stand-in task is served on the runtime while curl blocks a thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn labels_add_rotate_refuse_and_remove_a_certificate_with_no_reload_and_http_keeps_routing(
    ) {
        let port = support::free_port();
        let task = Backend::start_at("web-1", SocketAddr::from(([127, 0, 0, 7], port))).await;
        let haproxy = Haproxy::start_https(&ProxyState::default()).await;
        let (https_port, certs) = https(&haproxy);
        let secrets = tempfile::tempdir().expect("secrets dir");
        let first = secret_pair(secrets.path(), "one", &["a.example"]);
        let second = secret_pair(secrets.path(), "two", &["a.example"]);
        // Valid, but for another name than the service's host.
        secret_pair(secrets.path(), "other", &["b.example"]);
        let mut driver = reconciler(&haproxy, secrets.path());
        let master = haproxy.master();
        // The status view's certificates: (service, secret) of each served.
        let shown = |driver: &Reconciler| -> Vec<(String, String)> {
            let (_, certs, _) = driver.observer().status_extras();
            certs.into_iter().map(|c| (c.service, c.secret)).collect()
        };
        let web = |secret: &str| vec![("web".to_owned(), secret.to_owned())];
        let labelled = |crt: &str, key: &str| {
            snapshot(
                service(
                    port,
                    &[
                        ("com.docker.lb.ssl_cert", crt),
                        ("com.docker.lb.ssl_key", key),
                    ],
                ),
                7,
            )
        };

        // Creating the routed service is its one reload; the certificate comes with it.
        driver
            .pass(&labelled("one-crt", "one-key"))
            .await
            .expect("pass");
        driver.flush().await.expect("files");
        wait_served(https_port, "a.example", &of_pem(&first)).await;
        assert_eq!(shown(&driver), web("one-crt"));
        let (_, listed, now) = driver.observer().status_extras();
        assert_eq!(listed[0].names, ["a.example"]);
        assert!(listed[0].not_after > now, "{listed:?}");
        let after_create = reloads(&master).await;
        // Its expiry is exported for alerting (monitoring/alerts.yml, 14 days ahead).
        let expiry = |driver: &Reconciler, secret: &str| -> Option<i64> {
            let series = format!(
                "swarm_lb_certificate_expiry_timestamp_seconds{{service=\"web\",secret=\"{secret}\"}} "
            );
            driver
                .observer()
                .metrics
                .encode()
                .lines()
                .find_map(|l| l.strip_prefix(&series).and_then(|v| v.parse().ok()))
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let not_after = expiry(&driver, "one-crt").expect("an expiry series for one-crt");
        assert!(not_after > now, "{not_after} is not ahead of {now}");
        let cert_file = certs.cert("web").expect("path");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(cert_file.as_str())
                .expect("cert file")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        // Rotation: new secrets, labels changed.
        driver
            .pass(&labelled("two-crt", "two-key"))
            .await
            .expect("pass");
        wait_served(https_port, "a.example", &of_pem(&second)).await;
        assert_eq!(
            expiry(&driver, "one-crt"),
            None,
            "the rotated-out secret's series goes"
        );
        assert!(expiry(&driver, "two-crt").is_some());
        assert_eq!(shown(&driver), web("two-crt"));

        // A pair that does not cover the host, and a key of another certificate: refused,
        // the served certificate stays, HTTP still routes.
        driver
            .pass(&labelled("other-crt", "other-key"))
            .await
            .expect("pass");
        driver
            .pass(&labelled("two-crt", "one-key"))
            .await
            .expect("pass");
        driver
            .pass(&labelled("missing-crt", "missing-key"))
            .await
            .expect("pass");
        assert_eq!(served(https_port, "a.example"), of_pem(&second));
        assert_eq!(status_of(haproxy.http_port, "a.example"), "200");
        assert_eq!(
            shown(&driver),
            web("two-crt"),
            "the one HAProxy still serves"
        );

        // Labels removed: the default certificate again.
        driver
            .pass(&snapshot(service(port, &[]), 7))
            .await
            .expect("pass");
        let default = served(https_port, "unknown.example");
        wait_served(https_port, "a.example", &default).await;
        assert!(
            std::fs::metadata(cert_file.as_str()).is_err(),
            "file removed"
        );
        assert!(shown(&driver).is_empty(), "labels removed");
        assert_eq!(
            expiry(&driver, "two-crt"),
            None,
            "no certificate, no series"
        );
        assert_eq!(
            reloads(&master).await,
            after_create,
            "no reload after creation"
        );
        drop(task);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ssl_only_label_turns_the_https_redirect_on_and_off_with_no_reload() {
        let port = support::free_port();
        let task = Backend::start_at("web-1", SocketAddr::from(([127, 0, 0, 8], port))).await;
        let haproxy = Haproxy::start_https(&ProxyState::default()).await;
        let secrets = tempfile::tempdir().expect("secrets dir");
        let mut driver = reconciler(&haproxy, secrets.path());
        let master = haproxy.master();
        driver
            .pass(&snapshot(service(port, &[]), 8))
            .await
            .expect("pass");
        assert_eq!(status_of(haproxy.http_port, "a.example"), "200");
        let before = reloads(&master).await;

        driver
            .pass(&snapshot(
                service(port, &[("com.docker.lb.ssl_only", "true")]),
                8,
            ))
            .await
            .expect("pass");
        assert_eq!(status_of(haproxy.http_port, "a.example"), "301");
        driver
            .pass(&snapshot(service(port, &[]), 8))
            .await
            .expect("pass");
        assert_eq!(status_of(haproxy.http_port, "a.example"), "200");
        assert_eq!(reloads(&master).await, before);
        drop(task);
    }
}
