//! `swarm-lb`: the CLI. `run` drives HAProxy from Swarm; `plan` prints what `run` would do now;
//! `status` and `health` ask a running `run` over its HTTP listener.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use swarm_lb::haproxy::render::{self, Files, HttpsSettings, RenderSettings};
use swarm_lb::haproxy::tls::{self, CertFiles};
use swarm_lb::haproxy::{AdminClient, MapPath, Master, Pem};
use swarm_lb::model;
use swarm_lb::observe::{self, http, Observer};
use swarm_lb::plan::PlanSettings;
use swarm_lb::reconcile::secrets::{self, DeliveryHandle};
use swarm_lb::reconcile::tls::TlsCerts;
use swarm_lb::reconcile::{self, bootstrap_config, Reconciler, Settings, Strategy, Timing};
use swarm_lb::swarm;

/// Layer-7 routing by Interlock labels (com.docker.lb.*) for Docker Swarm, on a stock HAProxy
/// driven through its Runtime API: routine changes never reload it.
#[derive(Parser, Debug)]
#[command(name = "swarm-lb", version, about, long_about = None)]
struct Cli {
    /// Log lines as `text` (one line, key=value fields) or `json` (one object per line).
    #[arg(long, env = "SWARM_LB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The HTTP listener's default: loopback only (metrics and status are not for the public).
const LISTEN: &str = "127.0.0.1:9270";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Watch Swarm and keep HAProxy in line with the services' labels.
    Run(Box<RunArgs>),
    /// Print the plan `run` would apply against the live HAProxy now, without applying it.
    Plan(Box<Common>),
    /// Ask the running daemon what routes where: hosts, services, backends, each server's
    /// task, address, state and health check; then label problems.
    Status(StatusArgs),
    /// Exit 0 when the running daemon is ready (`/readyz`), 1 otherwise: a container
    /// healthcheck that needs no curl.
    Health(HealthArgs),
    /// What the secrets copy job runs (`--secrets-delivery=job`): copy the named secrets from
    /// `--from` into `--to`, mode 0600 in a 0700 directory, each through a rename.
    #[command(hide = true)]
    CopySecrets(CopySecretsArgs),
    /// Stream this node's task container events, reduced to what routing needs, to the edges
    /// on other nodes (`run --hints`): a global service on every node (README "Several nodes").
    Agent(AgentArgs),
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// This node's Docker endpoint (its container events and inspections).
    #[arg(long, env = "DOCKER_HOST")]
    docker: Option<String>,
    /// Address (ip:port) edges subscribe on: one on an internal, encrypted overlay.
    #[arg(long, env = "SWARM_LB_AGENT_LISTEN", default_value = "0.0.0.0:9271")]
    listen: SocketAddr,
}

#[derive(Args, Debug)]
struct CopySecretsArgs {
    /// Where the job's secrets are mounted.
    #[arg(long)]
    from: PathBuf,
    /// The secrets volume, as the job mounts it.
    #[arg(long)]
    to: PathBuf,
    /// Secret names (file names in --from).
    names: Vec<String>,
}

/// How the secrets the TLS labels name reach `--secrets-dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Delivery {
    /// Someone else puts them there (a bind mount of files, tests): swarm-lb only reads.
    Off,
    /// swarm-lb copies them there with a short-lived Swarm job on its own node (compose and
    /// stack deployments): README "TLS", "Where the key material comes from".
    Job,
}

/// Secrets delivery (README "TLS"): the Docker API never returns a secret's data, so a job on
/// this node mounts the named secrets and copies them into the volume at --secrets-dir.
#[derive(Args, Debug, Clone)]
struct DeliveryArgs {
    /// `off`: read --secrets-dir as it is (files put there by other means). `job`: copy the
    /// secrets the labels name into it with a Swarm job on this node; --secrets-dir must then
    /// be a named volume's mount point in swarm-lb's container (or give --secrets-volume).
    #[arg(long, env = "SWARM_LB_SECRETS_DELIVERY", value_enum, default_value_t = Delivery::Off)]
    secrets_delivery: Delivery,

    /// The named (node-local) volume mounted at --secrets-dir, which the job mounts too.
    /// Default: found by inspecting swarm-lb's own container.
    #[arg(long, env = "SWARM_LB_SECRETS_VOLUME")]
    secrets_volume: Option<String>,

    /// Image of the copy job: any image whose entrypoint is this swarm-lb binary. Default:
    /// swarm-lb's own container's image.
    #[arg(long, env = "SWARM_LB_SECRETS_JOB_IMAGE")]
    secrets_job_image: Option<String>,

    /// How long (seconds, > 0, at most 3600) a copy job may take before it counts as failed
    /// (removed, retried with backoff).
    #[arg(long, env = "SWARM_LB_SECRETS_JOB_TIMEOUT", default_value = "60", value_parser = secs_up_to(HOUR))]
    secrets_job_timeout: Duration,

    /// swarm-lb's own container (ID or name), inspected for its image and volumes. Default:
    /// read from /proc/self/mountinfo, else $HOSTNAME.
    #[arg(long, env = "SWARM_LB_SELF_CONTAINER")]
    self_container: Option<String>,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Where `swarm-lb run` listens (its --listen).
    #[arg(long, env = "SWARM_LB_LISTEN", default_value = LISTEN)]
    addr: SocketAddr,
    /// Print the status as JSON (for scripts) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct HealthArgs {
    /// Where `swarm-lb run` listens (its --listen).
    #[arg(long, env = "SWARM_LB_LISTEN", default_value = LISTEN)]
    addr: SocketAddr,
    /// Check liveness (`/healthz`: the loops run) instead of readiness.
    #[arg(long)]
    live: bool,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// This node's Docker endpoint: unix socket path, unix://, tcp:// or http:// URL. Container
    /// events and inspections and the HAProxy container's network attachments go here; Swarm
    /// state too unless --manager is given.
    #[arg(long, env = "DOCKER_HOST")]
    docker: Option<String>,

    /// A Swarm manager's Docker endpoint (same forms as --docker), for services, tasks,
    /// networks and their events: what a worker node's engine cannot answer. Unset: --docker
    /// (which must then be a manager). Best through an API-filtering proxy that allows only
    /// GET of /services, /tasks, /networks, /events, /info and /version.
    #[arg(long, env = "SWARM_LB_MANAGER")]
    manager: Option<String>,

    /// HAProxy's admin socket (`stats socket ... level admin`), as this process sees it.
    #[arg(
        long,
        env = "SWARM_LB_ADMIN_SOCKET",
        default_value = "/var/run/haproxy/admin.sock"
    )]
    admin_socket: PathBuf,

    /// HAProxy's master CLI socket (`haproxy -W -S <path>`), used for reloads.
    #[arg(
        long,
        env = "SWARM_LB_MASTER_SOCKET",
        default_value = "/var/run/haproxy/master.sock"
    )]
    master_socket: PathBuf,

    /// Directory of the generated haproxy.cfg and hosts.map. HAProxy must see it at the same
    /// path (mount it at the same place in both containers).
    #[arg(
        long,
        env = "SWARM_LB_CONFIG_DIR",
        default_value = "/usr/local/etc/haproxy"
    )]
    config_dir: PathBuf,

    /// Base template for the generated config (global, defaults, frontend). Defaults to the
    /// built-in copy of haproxy/base.cfg.
    #[arg(long, env = "SWARM_LB_TEMPLATE")]
    template: Option<PathBuf>,

    /// `bind` address of the HTTP frontend; repeat for several.
    #[arg(
        long = "bind",
        env = "SWARM_LB_BIND",
        value_delimiter = ',',
        default_value = ":80"
    )]
    binds: Vec<String>,

    /// `bind` address of the HTTPS side of the frontend (TLS ends there, certificate chosen by
    /// SNI from a crt-list in `<config-dir>/certs`); repeat for several; empty: no HTTPS.
    #[arg(
        long = "https-bind",
        env = "SWARM_LB_HTTPS_BIND",
        value_delimiter = ',',
        default_value = ":443"
    )]
    https_binds: Vec<String>,

    /// Balancers in front of this one (`CIDR[,CIDR...]`, IPv4 or IPv6): HTTP balancers, whose
    /// X-Forwarded-For / X-Forwarded-Proto are kept (from anyone else, replaced), and, written
    /// `proxy:CIDR`, TCP balancers that open every connection on the HTTP and HTTPS binds with a
    /// PROXY protocol header (v1 or v2); from any other source such a header is refused.
    #[arg(long, env = "SWARM_LB_TRUSTED_PROXIES", value_delimiter = ',', value_parser = trusted_proxy)]
    trusted_proxies: Vec<Option<swarm_lb::model::access::TrustedProxy>>,

    /// Protocols and cipher suites of the HTTPS side, after Mozilla's server-side TLS
    /// guidelines: modern (TLS 1.3 only), intermediate (TLS 1.2 AEAD suites and 1.3) or old
    /// (TLS 1.0 and up, for ancient clients only).
    #[arg(long, env = "SWARM_LB_TLS_PROFILE", default_value = "intermediate")]
    tls_profile: swarm_lb::haproxy::tls_profile::TlsProfile,

    /// PEM file (certificate chain, then key) served for unknown or absent SNI. Without it a
    /// self-signed certificate is generated at first start (and logged so).
    #[arg(long, env = "SWARM_LB_DEFAULT_CERT")]
    default_cert: Option<PathBuf>,

    /// Directory holding the secrets `com.docker.lb.ssl_cert`/`ssl_key` name, one file per
    /// secret named after it (where Docker mounts a service's secrets).
    #[arg(long, env = "SWARM_LB_SECRETS_DIR", default_value = "/run/secrets")]
    secrets_dir: PathBuf,

    /// CA bundle that `com.docker.lb.ssl_backend_tls_verify=required` verifies tasks against
    /// (copied into the config dir for HAProxy). Missing: verification fails closed.
    #[arg(
        long,
        env = "SWARM_LB_BACKEND_CA_FILE",
        default_value = swarm_lb::haproxy::tls::SYSTEM_CA_BUNDLE
    )]
    backend_ca_file: PathBuf,

    /// Slots are added to a task-mode backend in blocks of this many.
    #[arg(long, env = "SWARM_LB_SLOT_BLOCK", default_value_t = 42, value_parser = clap::value_parser!(u16).range(1..=4096))]
    slot_block: u16,

    /// Network (name or id) for services on several networks without com.docker.lb.network.
    #[arg(long, env = "SWARM_LB_DEFAULT_NETWORK")]
    default_network: Option<String>,

    /// Serve only services labelled com.docker.lb.service_cluster=<this>; unset or empty: only
    /// services without that label.
    #[arg(long, env = "SWARM_LB_SERVICE_CLUSTER")]
    service_cluster: Option<String>,

    /// HAProxy container (name or id) to attach to the routed services' networks. Without it
    /// swarm-lb attaches nothing and expects HAProxy to reach the services already.
    #[arg(long, env = "SWARM_LB_HAPROXY_CONTAINER")]
    haproxy_container: Option<String>,

    /// Networks (names or ids) never detached from the HAProxy container; repeat for several.
    #[arg(
        long = "keep-network",
        env = "SWARM_LB_KEEP_NETWORKS",
        value_delimiter = ','
    )]
    keep_networks: Vec<String>,

    /// Never grow slots with `add server`; grow by reload instead.
    #[arg(long, env = "SWARM_LB_NO_ADD_SERVER")]
    no_add_server: bool,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,

    /// Full resync interval (seconds, > 0, at most 86400): a missed event costs at most this
    /// much latency.
    #[arg(long, env = "SWARM_LB_RESYNC", default_value = "30", value_parser = secs_up_to(DAY))]
    resync: Duration,

    /// How often (seconds, > 0, at most 3600) to check that HAProxy is still the same process.
    #[arg(long, env = "SWARM_LB_PROXY_CHECK", default_value = "1", value_parser = secs_up_to(HOUR))]
    proxy_check: Duration,

    /// Minimum gap (milliseconds, 1..=60000) between two passes; bursts within it coalesce.
    #[arg(long, env = "SWARM_LB_DEBOUNCE_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    debounce_ms: u64,

    /// While a service's tasks change, how often (milliseconds, 1..=60000) to re-list them
    /// (Swarm emits no task events).
    #[arg(long, env = "SWARM_LB_SETTLE_POLL_MS", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    settle_poll_ms: u64,

    /// For the first 50 ms after an event, re-list a service's tasks this often
    /// (milliseconds, 0..=60000) instead: Swarm marks the tasks it stops a few milliseconds
    /// after the service event. 0: no burst.
    #[arg(long, env = "SWARM_LB_SETTLE_BURST_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    settle_burst_ms: u64,

    /// How long (seconds, > 0, at most 3600) to wait for a reload to finish before calling it
    /// failed.
    #[arg(long, env = "SWARM_LB_RELOAD_TIMEOUT", default_value = "30", value_parser = secs_up_to(HOUR))]
    reload_timeout: Duration,

    /// `runtime`: Runtime API, reload only when a backend appears or disappears. `reload`:
    /// rewrite and reload on every change (what reload-based drivers do; for comparison).
    #[arg(long, env = "SWARM_LB_STRATEGY", value_enum, default_value_t = Strategy::Runtime)]
    strategy: Strategy,

    /// Address (ip:port) of the HTTP listener: /metrics (Prometheus), /healthz, /readyz,
    /// /status. Loopback by default; in a container, `0.0.0.0:9270` and publish the port on
    /// the host's loopback.
    #[arg(long, env = "SWARM_LB_LISTEN", default_value = LISTEN)]
    listen: SocketAddr,

    #[command(flatten)]
    create: CreateArgs,

    #[command(flatten)]
    delivery: DeliveryArgs,

    /// Other nodes' hint agents (`swarm-lb agent`), `host:port`, each resolved to all its
    /// addresses (`tasks.<agent service>:9271`); comma-separated for several. Their task
    /// container events reach this edge at once instead of at the next resync.
    #[arg(long, env = "SWARM_LB_HINTS", value_delimiter = ',')]
    hints: Vec<String>,
}

/// Creating (or adopting) this node's HAProxy container: for swarm-lb deployed as a global
/// Swarm service on edge nodes, where HAProxy must stay a plain container.
#[derive(Args, Debug, Clone)]
struct CreateArgs {
    /// Create the HAProxy container (--haproxy-container) on this node if it does not exist, and
    /// start it if it is stopped. An existing container is adopted as it is, never restarted or
    /// recreated, so a swarm-lb restart or upgrade leaves HAProxy running.
    #[arg(long, env = "SWARM_LB_HAPROXY_CREATE")]
    haproxy_create: bool,

    /// Image of the created HAProxy container.
    #[arg(long, env = "SWARM_LB_HAPROXY_IMAGE", default_value = "haproxy:3.4")]
    haproxy_image: String,

    /// Named volume (node-local) of the created container holding the admin and master
    /// sockets, mounted at the sockets' directory; swarm-lb must mount the same volume there.
    #[arg(long, env = "SWARM_LB_RUN_VOLUME", default_value = "swarm-lb-run")]
    run_volume: String,

    /// Named volume (node-local) holding haproxy.cfg and hosts.map, mounted at --config-dir;
    /// swarm-lb must mount the same volume there.
    #[arg(
        long,
        env = "SWARM_LB_CONFIG_VOLUME",
        default_value = "swarm-lb-config"
    )]
    config_volume: String,

    /// Ports the created container publishes on the node's own addresses, `[ip:]host:container`;
    /// repeat or separate with commas.
    #[arg(long = "haproxy-publish", env = "SWARM_LB_HAPROXY_PUBLISH", value_delimiter = ',',
          default_value = "80:80", value_parser = parse_publish)]
    haproxy_publish: Vec<swarm::proxy::Publish>,
}

fn parse_publish(raw: &str) -> Result<swarm::proxy::Publish, String> {
    swarm::proxy::Publish::parse(raw).map_err(|e| e.to_string())
}

/// The container spec `--haproxy-create` creates with; `None` without that flag.
///
/// Errors: `--haproxy-create` without `--haproxy-container`, or a malformed name, image,
/// volume or path.
fn proxy_spec(c: &Common, a: &CreateArgs) -> anyhow::Result<Option<swarm::proxy::ProxySpec>> {
    if !a.haproxy_create {
        return Ok(None);
    }
    let name = c
        .haproxy_container
        .as_deref()
        .context("--haproxy-create needs --haproxy-container (the name to create or adopt)")?;
    let run_dir = c
        .admin_socket
        .parent()
        .and_then(|d| d.to_str())
        .filter(|d| !d.is_empty())
        .context("--admin-socket must be a path in a directory (the run volume's mount point)")?;
    let config_dir = c
        .config_dir
        .to_str()
        .context("--config-dir must be UTF-8")?;
    let master = c
        .master_socket
        .to_str()
        .context("--master-socket must be UTF-8")?;
    let spec = swarm::proxy::ProxySpec::stock(
        name,
        &a.haproxy_image,
        (&a.run_volume, run_dir),
        (&a.config_volume, config_dir),
        master,
        a.haproxy_publish.clone(),
    )
    .context("--haproxy-create")?;
    Ok(Some(spec))
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// A clap parser for a duration flag in seconds (decimals allowed): refuses 0, negative,
/// non-finite and unparsable values, and anything above `max`, at start-up. A period of 0
/// would panic inside a tokio task later (`period must be non-zero`), and a huge one would
/// overflow an `Instant`.
fn secs_up_to(max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |raw| {
        let secs: f64 = raw
            .trim()
            .parse()
            .map_err(|_| format!("{raw:?} is not a number of seconds"))?;
        if !secs.is_finite() || secs <= 0.0 {
            return Err(format!("{raw:?}: must be more than 0 seconds"));
        }
        let d = Duration::from_secs_f64(secs.min(max.as_secs_f64() + 1.0));
        if d > max {
            return Err(format!("{raw:?}: at most {} seconds", max.as_secs()));
        }
        if d.is_zero() {
            return Err(format!(
                "{raw:?}: must be more than 0 seconds (rounds to 0)"
            ));
        }
        Ok(d)
    }
}

fn settings(c: &Common, strategy: Strategy, reload_timeout: Duration) -> anyhow::Result<Settings> {
    let template = match &c.template {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading template {}", p.display()))?,
        None => render::BASE_TEMPLATE.to_owned(),
    };
    let files = Files::new(&c.config_dir);
    let map_path = files.map_path();
    let hosts_map = MapPath::new(&map_path.to_string_lossy()).with_context(|| {
        "--config-dir must be an absolute path of letters, digits, '/', '.', '-', '_'"
    })?;
    let render = RenderSettings {
        template,
        binds: c.binds.clone(),
        admin_socket: c.admin_socket.clone(),
        hosts_map: hosts_map.clone(),
        https: https_settings(c),
        trusted_proxies: c.trusted_proxies.iter().flatten().copied().collect(),
    };
    render
        .validate()
        .context("checking the template and the HAProxy paths")?;
    Ok(Settings {
        model: model::Settings {
            default_network: c.default_network.clone(),
            service_cluster: c.service_cluster.clone().filter(|s| !s.is_empty()),
        },
        plan: PlanSettings {
            block: usize::from(c.slot_block),
            add_server: !c.no_add_server,
            hosts_map: hosts_map.clone(),
            runtime_backends: Default::default(),
        },
        render,
        haproxy_container: c.haproxy_container.clone(),
        keep_networks: c.keep_networks.iter().cloned().collect::<BTreeSet<_>>(),
        reload_timeout,
        strategy,
    })
}

/// One `--trusted-proxies` item; an empty one (compose passes an unset variable as empty) is
/// none.
fn trusted_proxy(item: &str) -> Result<Option<swarm_lb::model::access::TrustedProxy>, String> {
    match item.trim() {
        "" => Ok(None),
        item => item.parse().map(Some).map_err(|e| format!("{e}")),
    }
}

/// The certificate files under the config dir.
fn cert_files(c: &Common) -> CertFiles {
    CertFiles::new(c.config_dir.join("certs"))
}

fn https_settings(c: &Common) -> Option<HttpsSettings> {
    let binds: Vec<String> = c
        .https_binds
        .iter()
        .filter(|b| !b.is_empty())
        .cloned()
        .collect();
    (!binds.is_empty()).then(|| HttpsSettings {
        binds,
        crt_list: cert_files(c).crt_list_path(),
        // Beside the admin socket, in the run dir only the two containers share.
        internal: c.admin_socket.with_file_name("https.sock"),
        tls_profile: c.tls_profile,
    })
}

/// Before HAProxy can load a config with the HTTPS bind: the default certificate (the
/// operator's, kept, or generated), a crt-list (kept when it exists: a restart serves the
/// certificates of the last run), and the backend CA bundle.
fn prepare_tls(c: &Common, settings: &Settings) -> anyhow::Result<()> {
    let certs = cert_files(c);
    // Compose passes an unset variable as an empty value.
    let operator = match c
        .default_cert
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --default-cert {}", path.display()))?;
            Some(Pem::new(&text).with_context(|| format!("--default-cert {}", path.display()))?)
        }
        None => None,
    };
    if certs.ensure_default(operator.as_ref())? {
        warn!(
            path = %certs.default_path().display(),
            "no --default-cert given: generated a self-signed default certificate (served for unknown names)"
        );
    }
    if !certs.crt_list_path().exists() {
        certs.write_crt_list(std::iter::empty())?;
    }
    let ca = render::backend_ca_path(&settings.render);
    if tls::install_backend_ca(&ca, &c.backend_ca_file, &certs)? {
        warn!(
            source = %c.backend_ca_file.display(),
            "no CA bundle: ssl_backend_tls_verify=required fails closed (no task verifies)"
        );
    }
    Ok(())
}

fn reconciler(
    c: &Common,
    settings: Settings,
    docker: swarm::Docker,
    delivery: Option<DeliveryHandle>,
) -> Reconciler {
    let https = settings.render.https.is_some();
    let reconciler = Reconciler::new(
        settings,
        AdminClient::new(&c.admin_socket),
        Master::new(&c.master_socket),
        Files::new(&c.config_dir),
        Some(docker),
    );
    match https {
        true => {
            let certs = TlsCerts::new(cert_files(c), &c.secrets_dir);
            reconciler.with_tls(match delivery {
                Some(d) => certs.with_delivery(d),
                None => certs,
            })
        }
        false => reconciler,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        // Fields at the top level, the pass span's fields alongside: one object per line.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    match cli.command {
        Cmd::Run(args) => run(*args).await,
        Cmd::Plan(common) => print_plan(*common).await,
        Cmd::Status(args) => print_status(args).await,
        Cmd::Health(args) => health(args).await,
        Cmd::CopySecrets(args) => copy_secrets(args),
        Cmd::Agent(args) => agent(args).await,
    }
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let docker = swarm::Docker::connect(args.docker.as_deref())
        .await
        .context("connecting to this node's Docker (--docker / DOCKER_HOST)")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (--listen)", args.listen))?;
    let serve = swarm_lb::hints::agent::run(
        docker,
        listener,
        swarm::AgentOptions::default(),
        swarm_lb::hints::agent::ServeOptions::default(),
    );
    tokio::select! {
        r = serve => r.context("hint agent")?,
        () = sigterm() => info!("terminated; stopping"),
        r = tokio::signal::ctrl_c() => { r.context("signal")?; }
    }
    Ok(())
}

fn copy_secrets(args: CopySecretsArgs) -> anyhow::Result<()> {
    for (name, bytes) in secrets::copy_secrets(&args.from, &args.to, &args.names)? {
        info!(secret = %name, bytes, "secret copied");
    }
    Ok(())
}

/// The secrets delivery of `--secrets-delivery=job`, set up: the volume, the image, this node;
/// `None` when delivery is off (or HTTPS is). With the handle, the worker's task.
///
/// Errors: what is missing (no named volume at --secrets-dir, no image, no Swarm node ID) and
/// which flag gives it.
async fn delivery(
    c: &Common,
    a: &DeliveryArgs,
    https: bool,
    docker: &swarm::Docker,
    recheck: Duration,
) -> anyhow::Result<Option<(DeliveryHandle, JoinHandle<()>)>> {
    if a.secrets_delivery == Delivery::Off {
        return Ok(None);
    }
    if !https {
        warn!("--secrets-delivery=job without an HTTPS bind: no certificate is served, nothing is copied");
        return Ok(None);
    }
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (mut volume, mut image) = (nonempty(&a.secrets_volume), nonempty(&a.secrets_job_image));
    if volume.is_none() || image.is_none() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let hostname = std::env::var("HOSTNAME").ok();
        let id = nonempty(&a.self_container)
            .or_else(|| secrets::own_container_id(&mountinfo, hostname.as_deref()))
            .context("--secrets-delivery=job: cannot tell swarm-lb's own container; give --secrets-volume and --secrets-job-image, or --self-container")?;
        let own = docker.own_container(&id).await.with_context(|| {
            format!("--secrets-delivery=job: inspecting swarm-lb's own container {id} (give --self-container, or --secrets-volume and --secrets-job-image)")
        })?;
        let dir = c.secrets_dir.to_string_lossy();
        volume = volume.or_else(|| {
            own.volumes
                .iter()
                .find(|(_, dest)| dest.trim_end_matches('/') == dir.trim_end_matches('/'))
                .map(|(name, _)| name.clone())
        });
        image = image.or_else(|| Some(own.image.clone()).filter(|i| !i.is_empty()));
    }
    let volume = volume.with_context(|| {
        format!(
            "--secrets-delivery=job: no named volume is mounted at --secrets-dir {} in swarm-lb's container; mount one there (docker-compose.yml does) or give --secrets-volume",
            c.secrets_dir.display()
        )
    })?;
    let image = image
        .context("--secrets-delivery=job: no image for the copy job; give --secrets-job-image")?;
    let node_id = docker
        .local_node_id()
        .await
        .context("--secrets-delivery=job: this node's Swarm node ID")?;
    std::fs::create_dir_all(&c.secrets_dir)
        .with_context(|| format!("creating --secrets-dir {}", c.secrets_dir.display()))?;
    std::fs::set_permissions(
        &c.secrets_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .with_context(|| format!("making --secrets-dir {} 0700", c.secrets_dir.display()))?;
    info!(
        volume = %volume,
        image = %image,
        node = %node_id,
        dir = %c.secrets_dir.display(),
        "secrets delivery: copy jobs on this node"
    );
    Ok(Some(secrets::spawn(
        docker.clone(),
        secrets::DeliverySettings {
            dir: c.secrets_dir.clone(),
            volume,
            image,
            node_id,
            timeout: a.secrets_job_timeout,
            poll: Duration::from_millis(250),
            recheck,
            retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
        },
    )))
}

async fn print_status(args: StatusArgs) -> anyhow::Result<()> {
    let (code, body) = http::get(args.addr, "/status").await?;
    if code != 200 {
        anyhow::bail!("swarm-lb at {} answered {code}: {}", args.addr, body.trim());
    }
    if args.json {
        println!("{}", body.trim_end());
        return Ok(());
    }
    let status: observe::Status =
        serde_json::from_str(&body).context("decoding the daemon's /status")?;
    print!("{}", observe::status::render(&status));
    Ok(())
}

async fn health(args: HealthArgs) -> anyhow::Result<()> {
    let path = if args.live { "/healthz" } else { "/readyz" };
    match http::get(args.addr, path).await {
        Ok((200, _)) => Ok(()),
        Ok((code, body)) => {
            eprintln!("swarm-lb: {path} answered {code}: {}", body.trim());
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("swarm-lb: {e}");
            std::process::exit(1)
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let settings = settings(c, args.strategy, args.reload_timeout)?;
    let proxy = proxy_spec(c, &args.create)?;
    // HAProxy (restarting until a config exists) should not wait on Docker: write first.
    prepare_tls(c, &settings).context("preparing the HTTPS bind's certificate files")?;
    let mut bootstrap = Files::new(&c.config_dir);
    if bootstrap_config(&mut bootstrap, &settings).context("writing the bootstrap config")? {
        info!(dir = %c.config_dir.display(), "no config found; wrote an empty one so HAProxy can start");
    }
    let docker = connect(c).await?;
    if let Some(spec) = &proxy {
        let outcome = docker
            .ensure_proxy(spec)
            .await
            .with_context(|| format!("creating or adopting HAProxy container {}", spec.name))?;
        info!(container = %spec.name, image = %spec.image, ?outcome, "HAProxy container on this node");
    }
    // Bound before anything else can fail slowly: a taken port is a start-up error.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (--listen)", args.listen))?;
    // A pass may wait for a reload and then for the new worker (twice the reload timeout).
    let stall = args.reload_timeout * 2 + args.proxy_check + Duration::from_secs(60);
    let observer = Arc::new(Observer::new(stall));
    let source = http::StatusSource {
        admin_socket: c.admin_socket.clone(),
        hosts_map: settings.plan.hosts_map.clone(),
    };
    let mut tasks = vec![(
        "http server",
        tokio::spawn(http::serve(listener, observer.clone(), source)),
    )];
    info!(listen = %args.listen, "serving /metrics, /healthz, /readyz, /status");
    let https = settings.render.https.is_some();
    let delivery = match delivery(c, &args.delivery, https, &docker, args.resync).await? {
        Some((handle, worker)) => {
            tasks.push(("secrets worker", worker));
            Some(handle)
        }
        None => None,
    };
    let mut reconciler =
        reconciler(c, settings, docker.clone(), delivery).with_observer(observer.clone());
    // The resync timer asks for a full read; this is the backstop.
    reconciler.set_full_read_every(args.resync * 2);
    let default_settle = swarm::SettleOptions::default();
    let options = swarm::WatchOptions {
        resync: args.resync,
        settle: swarm::SettleOptions {
            poll: Duration::from_millis(args.settle_poll_ms),
            burst: Duration::from_millis(args.settle_burst_ms),
            burst_for: if args.settle_burst_ms == 0 {
                Duration::ZERO
            } else {
                default_settle.burst_for
            },
            ..default_settle
        },
        service_cluster: c.service_cluster.clone().filter(|s| !s.is_empty()),
        ..swarm::WatchOptions::default()
    };
    let first = docker.snapshot().await.context("listing Swarm")?;
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(first));
    let mut watcher = swarm::Watcher::new(docker.clone(), options).with_observer(observer.clone());
    if !args.hints.is_empty() {
        let own = docker
            .local_node_id()
            .await
            .context("--hints: this node's Swarm node ID")?;
        let (hints_tx, hints_rx) = tokio::sync::mpsc::unbounded_channel();
        let options =
            swarm_lb::hints::subscribe::SubscribeOptions::new(args.hints.clone(), Some(own));
        tasks.push((
            "hint subscriber",
            tokio::spawn(swarm_lb::hints::subscribe::run(
                options,
                hints_tx,
                Some(observer),
            )),
        ));
        watcher = watcher.with_hints(hints_rx);
    }
    let watcher = tokio::spawn(watcher.run(tx));
    let timing = Timing {
        resync: args.resync,
        proxy_check: args.proxy_check,
        debounce: Duration::from_millis(args.debounce_ms),
        retry: Duration::from_millis(200),
        max_retry: Duration::from_secs(10),
    };
    info!(strategy = ?args.strategy, "swarm-lb running");
    // Spawned, not polled by the thread blocking on main: on a worker thread the I/O driver
    // wakes it without a cross-thread hop, which cuts the admin-socket client's CPU per batch
    // (bench-micro; the figures are in README's benchmark section).
    tasks.push((
        "reconciler",
        tokio::spawn(reconcile::run(reconciler, rx, timing)),
    ));
    tasks.push(("watcher", watcher));
    tokio::select! {
        e = first_to_end(tasks) => return Err(e),
        r = tokio::signal::ctrl_c() => { r.context("signal")?; info!("interrupted; stopping"); }
        () = sigterm() => { info!("terminated; stopping"); }
    }
    Ok(())
}

/// The daemon's tasks, each needed for the process's whole life: none of them returns while
/// the others run, so the first to end (or panic) is the process's error, never a daemon that
/// looks healthy without it. Waits forever with no tasks.
async fn first_to_end(tasks: Vec<(&'static str, JoinHandle<()>)>) -> anyhow::Error {
    if tasks.is_empty() {
        return std::future::pending().await;
    }
    let (names, handles): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
    let (ended, i, _) = futures_util::future::select_all(handles).await;
    let task = names[i];
    match ended {
        Ok(()) => {
            error!(task, "task ended; stopping");
            anyhow::anyhow!("the {task} task ended")
        }
        Err(e) if e.is_panic() => {
            error!(task, "task panicked; stopping");
            anyhow::anyhow!("the {task} task panicked")
        }
        Err(e) => {
            error!(task, error = %e, "task cancelled; stopping");
            anyhow::Error::new(e).context(format!("the {task} task"))
        }
    }
}

/// This node's engine and the manager's (`--manager`), checked: the Swarm-state engine must
/// be a manager, so that a worker's socket alone is a start-up error that says what to give.
async fn connect(c: &Common) -> anyhow::Result<swarm::Docker> {
    let docker = swarm::Docker::connect_split(c.manager.as_deref(), c.docker.as_deref())
        .await
        .context("connecting to Docker (--docker / DOCKER_HOST, --manager / SWARM_LB_MANAGER)")?;
    docker
        .check_manager()
        .await
        .context("checking the Swarm-state engine")?;
    info!(
        swarm = %docker.endpoint(),
        local = %docker.local_endpoint().unwrap_or_else(|| docker.endpoint()),
        api = docker.api_version(),
        "connected to Docker"
    );
    Ok(docker)
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn print_plan(c: Common) -> anyhow::Result<()> {
    let settings = settings(&c, Strategy::Runtime, Duration::from_secs(30))?;
    let docker = connect(&c).await?;
    let snap = docker.snapshot().await.context("listing Swarm")?;
    let mut reconciler = reconciler(&c, settings, docker, None);
    let (desired, _actual, plan) = reconciler.plan(&snap).await.context("planning")?;
    for e in desired
        .errors
        .iter()
        .chain(&desired.warnings)
        .chain(&desired.notices)
    {
        println!("# {e}");
    }
    if plan.is_empty() {
        println!("# nothing to do: HAProxy matches Swarm");
        return Ok(());
    }
    for n in &plan.attach {
        println!("attach network {n}");
    }
    for cmd in &plan.runtime {
        println!("{}", swarm_lb::haproxy::codec::encode(cmd));
    }
    if plan.reload {
        println!(
            "# write config with {} backends and reload",
            plan.target.backends.len()
        );
    }
    for n in &plan.detach {
        println!("detach network {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs until the test's runtime ends.
    fn forever() -> JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test]
    async fn a_panic_in_the_http_server_or_the_secrets_worker_stops_the_daemon_naming_it() {
        let tasks = vec![
            ("http server", tokio::spawn(async { panic!("bind lost") })),
            ("reconciler", forever()),
            ("watcher", forever()),
        ];
        let e = tokio::time::timeout(Duration::from_secs(10), first_to_end(tasks))
            .await
            .expect("the panic ends the wait");
        assert_eq!(e.to_string(), "the http server task panicked");

        let tasks = vec![
            ("http server", forever()),
            ("secrets worker", tokio::spawn(async {})),
            ("reconciler", forever()),
        ];
        let e = tokio::time::timeout(Duration::from_secs(10), first_to_end(tasks))
            .await
            .expect("the exit ends the wait");
        assert_eq!(e.to_string(), "the secrets worker task ended");
    }

    #[tokio::test(start_paused = true)]
    async fn while_every_task_runs_the_daemon_runs() {
        let tasks = vec![("http server", forever()), ("watcher", forever())];
        let waited = tokio::time::timeout(Duration::from_secs(3600), first_to_end(tasks)).await;
        assert!(waited.is_err(), "nothing ended");
    }

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["swarm-lb", "run"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Cmd::Run(run) => Ok(*run),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_listen_address_is_a_cli_error_naming_the_flag() {
        for bad in ["9270", "localhost:9270", "127.0.0.1:99999", "", "1.2.3.4"] {
            let arg = format!("--listen={bad}");
            let e = run_args(&[&arg]).expect_err(&format!("{arg:?} accepted"));
            assert!(e.to_string().contains("--listen"), "{arg:?}: {e}");
        }
        let a = run_args(&["--listen", "0.0.0.0:9999"]).expect("parses");
        assert_eq!(a.listen, "0.0.0.0:9999".parse::<SocketAddr>().unwrap());
        assert_eq!(
            run_args(&[]).expect("defaults").listen,
            LISTEN.parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn creating_the_haproxy_container_needs_its_name_and_derives_the_mounts_from_the_sockets() {
        let a = run_args(&["--haproxy-create"]).expect("parses");
        let e = proxy_spec(&a.common, &a.create).expect_err("no name");
        assert!(e.to_string().contains("--haproxy-container"), "{e}");
        let a = run_args(&[
            "--haproxy-create",
            "--haproxy-container=edge-haproxy",
            "--haproxy-publish=10.0.0.1:80:80,8405:8405",
        ])
        .expect("parses");
        let spec = proxy_spec(&a.common, &a.create)
            .expect("valid")
            .expect("asked for");
        assert_eq!(spec.name, "edge-haproxy");
        assert_eq!(spec.image, "haproxy:3.4");
        assert_eq!(
            spec.run_volume,
            ("swarm-lb-run".into(), "/var/run/haproxy".into())
        );
        assert_eq!(
            spec.config_volume,
            ("swarm-lb-config".into(), "/usr/local/etc/haproxy".into())
        );
        assert_eq!(spec.publish.len(), 2);
        let a = run_args(&["--haproxy-container=x"]).expect("parses");
        assert!(proxy_spec(&a.common, &a.create).expect("fine").is_none());
    }

    #[test]
    fn a_bad_publish_value_is_a_cli_error_naming_the_flag() {
        for bad in ["80", "0:80", "a:b:c:d", "1.2.3:80:80"] {
            let arg = format!("--haproxy-publish={bad}");
            let e = run_args(&[&arg]).expect_err(&format!("{arg:?} accepted"));
            assert!(e.to_string().contains("--haproxy-publish"), "{arg:?}: {e}");
        }
    }

    #[test]
    fn the_manager_endpoint_is_a_flag_or_env_and_defaults_to_none() {
        assert_eq!(run_args(&[]).expect("defaults").common.manager, None);
        let a = run_args(&["--manager", "tcp://10.0.0.1:2375"]).expect("parses");
        assert_eq!(a.common.manager.as_deref(), Some("tcp://10.0.0.1:2375"));
    }

    #[test]
    fn secrets_delivery_is_off_unless_asked_for_and_the_copy_subcommand_is_hidden() {
        let a = run_args(&[]).expect("defaults");
        assert_eq!(a.delivery.secrets_delivery, Delivery::Off);
        assert_eq!(a.delivery.secrets_job_timeout, Duration::from_secs(60));
        let a = run_args(&["--secrets-delivery=job", "--secrets-volume=v"]).expect("job");
        assert_eq!(a.delivery.secrets_delivery, Delivery::Job);
        assert_eq!(a.delivery.secrets_volume.as_deref(), Some("v"));
        let e = run_args(&["--secrets-delivery=copy"]).expect_err("unknown mode");
        assert!(e.to_string().contains("--secrets-delivery"), "{e}");
        let cli = Cli::try_parse_from([
            "swarm-lb",
            "copy-secrets",
            "--from",
            "/a",
            "--to",
            "/b",
            "x",
        ])
        .expect("copy-secrets");
        assert!(matches!(cli.command, Cmd::CopySecrets(ref c) if c.names == ["x"]));
        let mut help = Vec::new();
        <Cli as clap::CommandFactory>::command()
            .write_help(&mut help)
            .expect("help");
        assert!(!String::from_utf8_lossy(&help).contains("copy-secrets"));
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        let cli = Cli::try_parse_from(["swarm-lb", "--log-format", "json", "run"]).expect("json");
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["swarm-lb", "run", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn the_cli_defaults_parse() {
        let a = run_args(&[]).expect("defaults");
        assert_eq!(a.resync, Duration::from_secs(30));
        assert_eq!(a.proxy_check, Duration::from_secs(1));
        assert_eq!(a.reload_timeout, Duration::from_secs(30));
        assert_eq!(a.settle_poll_ms, 25);
    }

    #[test]
    fn a_decimal_number_of_seconds_is_a_duration() {
        let a = run_args(&["--resync", "0.5", "--proxy-check", "2.25"]).expect("parses");
        assert_eq!(a.resync, Duration::from_millis(500));
        assert_eq!(a.proxy_check, Duration::from_millis(2250));
    }

    #[test]
    fn every_duration_flag_refuses_zero_negative_unparsable_and_huge_values_naming_itself() {
        for flag in ["--resync", "--proxy-check", "--reload-timeout"] {
            for bad in [
                "0", "0.0", "-1", "-0", "abc", "", "NaN", "inf", "1e300", "1e-12",
            ] {
                let arg = format!("{flag}={bad}");
                let e = run_args(&[&arg]).expect_err(&format!("{arg:?} accepted"));
                let text = e.to_string();
                assert!(text.contains(flag), "{flag} {bad:?}: {text}");
            }
        }
        for flag in ["--debounce-ms", "--settle-poll-ms"] {
            for bad in ["0", "-5", "x", "60001", "18446744073709551616"] {
                let arg = format!("{flag}={bad}");
                let e = run_args(&[&arg]).expect_err(&format!("{arg:?} accepted"));
                assert!(e.to_string().contains(flag), "{arg:?}: {e}");
            }
        }
        for bad in ["-1", "60001", "x"] {
            let arg = format!("--settle-burst-ms={bad}");
            assert!(run_args(&[&arg]).is_err(), "{arg:?}");
        }
        assert_eq!(
            run_args(&["--settle-burst-ms", "0"])
                .expect("0 turns the burst off")
                .settle_burst_ms,
            0
        );
        for bad in ["0", "4097", "-1"] {
            let arg = format!("--slot-block={bad}");
            assert!(run_args(&[&arg]).is_err(), "{arg:?}");
        }
    }
}
