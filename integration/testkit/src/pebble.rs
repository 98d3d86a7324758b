//! Pebble, Let's Encrypt's test ACME server (Debian's `pebble` package, with
//! `pebble-challtestsrv` as its DNS), started for one test: the CA the ACME tests order from.
//!
//! - Its DNS answers every name with 127.0.0.1, and its validation authority fetches HTTP-01
//!   answers on the port given (HAProxy's HTTP port on loopback).
//! - Its HTTPS listener uses a certificate from a CA made here ([`Pebble::ca_bundle`]): what
//!   swarm-lb's `--acme-ca-bundle` is for. The listener is on [`PebbleOptions::listen`]
//!   (loopback by default; the e2e stacks reach it on the Docker bridge's gateway), and the
//!   certificate names [`PebbleOptions::names`] besides `localhost` and `127.0.0.1`.
//! - Validation runs at once (`PEBBLE_VA_NOSLEEP`), every good nonce is accepted.
//! - In another network namespace ([`PebbleOptions::netns`], the 3-node Swarm's switch `mn-sw`)
//!   both run through `ip netns exec`; their DNS then answers with
//!   [`PebbleOptions::default_ipv4`] (an edge's address) instead of loopback.
//! - Both die with the test binary even when it never drops them (a `Pebble` kept in a
//!   `static` for a whole suite): they are started with `setpriv --pdeathsig KILL` from a thread
//!   that lives as long as the process.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

/// A child process killed (and reaped) on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Panics, saying how to install them, unless `pebble`, `pebble-challtestsrv` and `curl` are
/// on the PATH.
pub fn require_pebble() {
    for tool in ["pebble", "pebble-challtestsrv", "curl"] {
        assert!(
            on_path(tool),
            "{tool} is needed by the ACME tests: apt-get install pebble curl (scripts/setup.sh installs them)"
        );
    }
}

/// `program` run in `netns` (`ip netns exec`, which execs it: the child is the program itself)
/// or here.
fn command_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// [`command_in`], under `setpriv --pdeathsig KILL` when util-linux has it: the kernel kills
/// the child when the thread that spawned it ends (`PR_SET_PDEATHSIG`); [`spawn_tied`] spawns it
/// from a thread that ends only with the process.
fn tied_command_in(netns: Option<&str>, program: &str) -> Command {
    if !on_path("setpriv") {
        return command_in(netns, program);
    }
    let mut c = Command::new("setpriv");
    c.args(["--pdeathsig", "KILL", "--"]);
    if let Some(ns) = netns {
        c.args(["ip", "netns", "exec", ns]);
    }
    c.arg(program);
    c
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);

/// Spawns `command` from a thread that never ends (a test's own thread, or its runtime's, ends
/// with the test, and would take a [`tied_command_in`] child with it).
fn spawn_tied(command: Command) -> std::io::Result<std::process::Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("pebble-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                // The sender lives in a static: not reached before the process exits.
                loop {
                    std::thread::park();
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, reply))
        .expect("the spawner thread");
    answer.recv().expect("the spawner thread's answer")
}

/// How to start Pebble.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Where HTTP-01 answers are fetched (on 127.0.0.1).
    pub http_port: u16,
    /// Lifetime of the certificates it issues, seconds (Pebble's `certificateValidityPeriod`;
    /// 5 years by default).
    pub validity_s: Option<u64>,
    /// The address its ACME and management listeners bind.
    pub listen: IpAddr,
    /// More names (DNS or IP) its HTTPS certificate carries.
    pub names: Vec<String>,
    /// Fail every validation: the validation authority fetches answers from a port where
    /// nothing listens (a CA that refuses, as an operator meets it).
    pub refuse: bool,
    /// The network namespace both processes run in (`ip netns exec`); `listen` is an address
    /// of that namespace. `None`: this one.
    pub netns: Option<String>,
    /// The address its DNS gives every name: where the validation authority fetches the HTTP-01
    /// answers (on [`PebbleOptions::http_port`]).
    pub default_ipv4: IpAddr,
}

impl PebbleOptions {
    pub fn new(http_port: u16) -> Self {
        Self {
            http_port,
            validity_s: None,
            listen: IpAddr::from([127, 0, 0, 1]),
            names: Vec::new(),
            refuse: false,
            netns: None,
            default_ipv4: IpAddr::from([127, 0, 0, 1]),
        }
    }
}

/// A running Pebble and its DNS; both stop on drop.
pub struct Pebble {
    /// The directory URL (`https://<listen>:<port>/dir`).
    pub directory: String,
    /// The management port (roots, intermediates).
    pub management: u16,
    /// The PEM root that signs Pebble's own HTTPS certificate.
    pub ca_bundle: PathBuf,
    listen: IpAddr,
    netns: Option<String>,
    /// Its DNS's management port (on the loopback of Pebble's namespace).
    dns_management: u16,
    _dns: Child,
    _pebble: Child,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Pebble on loopback, validating on `http_port`.
    pub async fn start(http_port: u16) -> Pebble {
        Self::start_with(PebbleOptions::new(http_port)).await
    }

    /// [`Pebble::start`] issuing certificates valid `validity_s` seconds.
    pub async fn start_issuing_for(http_port: u16, validity_s: Option<u64>) -> Pebble {
        Self::start_with(PebbleOptions {
            validity_s,
            ..PebbleOptions::new(http_port)
        })
        .await
    }

    pub async fn start_with(options: PebbleOptions) -> Pebble {
        require_pebble();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "swarm-lb test: Pebble's HTTPS CA",
        );
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend(options.names.iter().cloned());
        names.push(options.listen.to_string());
        names.sort();
        names.dedup();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let leaf = params.signed_by(&key, &issuer).expect("leaf");
        let ca_bundle = dir.path().join("ca.pem");
        std::fs::write(&ca_bundle, ca_cert.pem()).expect("write CA");
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write key");

        let (listen, management, dns, dns_management, tls) = (
            crate::free_port(),
            crate::free_port(),
            crate::free_port(),
            crate::free_port(),
            crate::free_port(),
        );
        let http_port = if options.refuse {
            crate::free_port()
        } else {
            options.http_port
        };
        let bind = |port: u16| match options.listen {
            IpAddr::V4(ip) => format!("{ip}:{port}"),
            IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        };
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": bind(listen),
                "managementListenAddress": bind(management),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        if let Some(validity) = options.validity_s {
            config["pebble"]["certificateValidityPeriod"] = validity.into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let netns = options.netns.as_deref();
        let IpAddr::V4(default_ipv4) = options.default_ipv4 else {
            panic!("PebbleOptions::default_ipv4 must be IPv4");
        };
        // Its DNS and management stay on the loopback of the namespace Pebble runs in.
        let mut dns_command = tied_command_in(netns, "pebble-challtestsrv");
        dns_command
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args([
                "-defaultIPv4",
                &default_ipv4.to_string(),
                "-defaultIPv6",
                "",
            ])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"));
        let dns_child = spawn_tied(dns_command)
            .map(Child)
            .expect("start pebble-challtestsrv");
        let mut pebble_command = tied_command_in(netns, "pebble");
        pebble_command
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // Validate at once (no random 0-15 s wait), accept every good nonce.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"));
        let pebble = spawn_tied(pebble_command).map(Child).expect("start pebble");
        let started = Pebble {
            directory: format!("https://{}/dir", bind(listen)),
            management,
            ca_bundle,
            listen: options.listen,
            netns: options.netns.clone(),
            dns_management,
            _dns: dns_child,
            _pebble: pebble,
            dir,
        };
        crate::poll_until(Duration::from_secs(10), "Pebble to listen", || async {
            started.answers().then_some(())
        })
        .await;
        started
    }

    /// Whether Pebble's directory answers over HTTPS, verified with [`Pebble::ca_bundle`] (from
    /// its namespace).
    fn answers(&self) -> bool {
        self.curl()
            .arg(&self.directory)
            .args(["-o", "/dev/null"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Pebble's directory document (RFC 8555 §7.1.1), the JSON text as served.
    pub fn directory_document(&self) -> String {
        let out = self.curl().arg(&self.directory).output().expect("run curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `curl` against Pebble's listeners, from its namespace, trusting its HTTPS root.
    fn curl(&self) -> Command {
        let mut c = command_in(self.netns.as_deref(), "curl");
        c.args(["-sSf", "--max-time", "5", "--cacert"])
            .arg(&self.ca_bundle)
            .stdin(std::process::Stdio::null());
        c
    }

    /// Pebble's root for the certificates it issues (made anew at each start), from its
    /// management interface, written to a file.
    pub fn issuing_root(&self) -> PathBuf {
        let path = self.dir.path().join("pebble-root.pem");
        let host = match self.listen {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let out = self
            .curl()
            .arg(format!("https://{host}:{}/roots/0", self.management))
            .arg("-o")
            .arg(&path)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// Its DNS gives every name `ip` from now on: where the validation authority fetches the
    /// next HTTP-01 answers (as an operator repoints a name away from a dead edge).
    ///
    /// Errors: its DNS did not take it (curl's complaint).
    pub fn set_default_ipv4(&self, ip: std::net::Ipv4Addr) -> Result<(), String> {
        let out = command_in(self.netns.as_deref(), "curl")
            .args(["-sSf", "--max-time", "5", "-X", "POST", "--data"])
            .arg(format!("{{\"ip\":\"{ip}\"}}"))
            .arg(format!(
                "http://127.0.0.1:{}/set-default-ipv4",
                self.dns_management
            ))
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("run curl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pebble-challtestsrv's set-default-ipv4: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Pebble's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("pebble.log"), read("pebble.err"))
    }

    /// How many orders Pebble accepted (its log says `Added order "<id>" to the db` for each
    /// `newOrder`, RFC 8555 §7.4).
    pub fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// The directory Pebble's files are in (its CA bundle among them).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
