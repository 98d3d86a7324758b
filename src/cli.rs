//! The command line: every subcommand's flags and their environment variables, as clap reads
//! them, and the value parsers that refuse bad values at start-up. Part of the binary (not the
//! library): `settings.rs` turns these into the library's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use swarm_lb::reconcile::Strategy;
use swarm_lb::swarm::{self, SettleOptions};

/// `reload`'s timeout when none is given (`plan`, which never reloads, needs one too).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A default in milliseconds for a `u64` flag, from the library's `Duration`.
const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Layer-7 routing by Interlock labels (com.docker.lb.*) for Docker Swarm, on a stock HAProxy
/// driven through its Runtime API: routine changes never reload it.
#[derive(Parser, Debug)]
#[command(name = "swarm-lb", version, about, long_about = None)]
pub struct Cli {
    /// Log lines as `text` (one line, key=value fields) or `json` (one object per line).
    #[arg(long, env = "SWARM_LB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// Installs the process's log subscriber (see [`LogFormat::install`]): on stdout, but on
    /// stderr for `check`, whose stdout is its report (one JSON document with `--json`).
    pub fn install_logs(&self) {
        self.log_format
            .install(matches!(self.command, Cmd::Check(_)))
    }
}

impl LogFormat {
    /// Installs the process's log subscriber in this format, filtered by `RUST_LOG` (default
    /// `info`), writing to stdout, or to stderr when `to_stderr`.
    pub fn install(self, to_stderr: bool) {
        use tracing_subscriber::fmt::writer::BoxMakeWriter;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let (writer, terminal) = match to_stderr {
            true => (
                BoxMakeWriter::new(std::io::stderr),
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ),
            false => (
                BoxMakeWriter::new(std::io::stdout),
                std::io::IsTerminal::is_terminal(&std::io::stdout()),
            ),
        };
        let fmt = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_writer(writer);
        match self {
            LogFormat::Text => fmt.with_ansi(terminal).init(),
            // Fields at the top level, the pass span's fields alongside: one object per line.
            LogFormat::Json => fmt
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .init(),
        }
    }
}

/// The HTTP listener's default: loopback only (metrics and status are not for the public).
pub const LISTEN: &str = "127.0.0.1:9270";

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Watch Swarm and keep HAProxy in line with the services' labels.
    Run(Box<RunArgs>),
    /// Print the plan `run` would apply against the live HAProxy now, without applying it.
    Plan(Box<Common>),
    /// Ask the running daemon what routes where: hosts, services, backends, each server's
    /// task, address, state and health check; then label problems.
    Status(StatusArgs),
    /// Print what swarm-lb would do with every service of the Swarm, without HAProxy: routed,
    /// refused, ignored, and the Interlock labels it reads differently (docs/migrating-from-interlock.md).
    #[command(long_about = CHECK_ABOUT)]
    Check(CheckArgs),
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
    /// A manager's Docker API for the worker edges, filtered to exactly swarm-lb's calls: its
    /// reads, and the creation and removal of secrets copy jobs checked field by field
    /// (README "Several nodes"): docker-stack.yml's `api`, on the managers.
    ApiProxy(ApiProxyArgs),
}

const CHECK_ABOUT: &str = "\
Print what swarm-lb would do with every service of the Swarm: `routed` (hosts, port, mode task or \
vip, network, backend, the other labels in force), `refused` (each error exactly as the daemon \
would log it), `ignored` (no com.docker.lb.* labels, another service cluster, no hosts label), \
`interlock` (Interlock's own services, with the swarm-lb flags its configuration options become); \
under each service, the daemon's warnings and the Interlock labels swarm-lb reads differently \
(`changed from Interlock`). Reads the Docker API only (a manager: the socket, --docker or \
--manager); never talks to HAProxy, never writes a file.

Exit status: 0 every service this swarm-lb would serve routes as labelled (warnings and changes \
from Interlock are printed but do not count); 1 at least one service is refused or routed with \
part of its labels left out (with --strict: or has a warning); 2 nothing was checked or reported: \
Docker could not be reached or listed, a flag was refused, or stdout was closed (the error is on \
stderr).";

/// `swarm-lb check`: Docker's endpoints and the flags of `run` that decide which services are
/// served and on which network.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// This node's Docker endpoint (as `run`'s --docker); Swarm state too unless --manager.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker: Option<String>,
    /// A Swarm manager's Docker endpoint (as `run`'s --manager).
    #[arg(long, env = "SWARM_LB_MANAGER")]
    pub manager: Option<String>,
    /// As `run`'s --default-network.
    #[arg(long, env = "SWARM_LB_DEFAULT_NETWORK")]
    pub default_network: Option<String>,
    /// As `run`'s --service-cluster: check what the swarm-lb of that cluster would serve.
    #[arg(long, env = "SWARM_LB_SERVICE_CLUSTER")]
    pub service_cluster: Option<String>,
    /// As `run`'s --acme: without it, com.docker.lb.ssl_acme=true is reported refused.
    #[arg(long, env = "SWARM_LB_ACME")]
    pub acme: bool,
    /// One JSON array on stdout, an object per service (`service`, `id`, `verdict`, the
    /// verdict's fields, `errors`, `warnings`, `changed`).
    #[arg(long)]
    pub json: bool,
    /// Count warnings (unknown or misspelt labels, labels not offered in vip mode) as
    /// refusals: exit 1.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug)]
pub struct ApiProxyArgs {
    /// This manager's Docker engine: a unix socket (`unix:///path` or a path).
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker: String,
    /// Address (ip:port) the worker edges reach it on: one on an internal overlay.
    #[arg(
        long,
        env = "SWARM_LB_API_PROXY_LISTEN",
        default_value = "0.0.0.0:2375"
    )]
    pub listen: SocketAddr,
    /// Images a secrets copy job may run (comma-separated). Default: this proxy's own image,
    /// which is the edges' own where one stack variable names both (docker-stack.yml).
    #[arg(long, env = "SWARM_LB_API_PROXY_JOB_IMAGES", value_delimiter = ',')]
    pub job_images: Vec<String>,
    /// Volumes a secrets copy job may write to (comma-separated): the edges' secrets volume.
    #[arg(
        long,
        env = "SWARM_LB_API_PROXY_JOB_VOLUMES",
        value_delimiter = ',',
        default_value = "swarm-lb-secrets"
    )]
    pub job_volumes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// This node's Docker endpoint (its container events and inspections).
    #[arg(long, env = "DOCKER_HOST")]
    pub docker: Option<String>,
    /// Address (ip:port) edges subscribe on: one on an internal, encrypted overlay.
    #[arg(long, env = "SWARM_LB_AGENT_LISTEN", default_value = "0.0.0.0:9271")]
    pub listen: SocketAddr,
}

#[derive(Args, Debug)]
pub struct CopySecretsArgs {
    /// Where the job's secrets are mounted.
    #[arg(long)]
    pub from: PathBuf,
    /// The secrets volume, as the job mounts it.
    #[arg(long)]
    pub to: PathBuf,
    /// Secret names (file names in --from).
    pub names: Vec<String>,
}

/// How the secrets the TLS labels name reach `--secrets-dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// Someone else puts them there (a bind mount of files, tests): swarm-lb only reads.
    Off,
    /// swarm-lb copies them there with a short-lived Swarm job on its own node (compose and
    /// stack deployments): README "TLS", "Where the key material comes from".
    Job,
}

/// Secrets delivery (README "TLS"): the Docker API never returns a secret's data, so a job on
/// this node mounts the named secrets and copies them into the volume at --secrets-dir.
#[derive(Args, Debug, Clone)]
pub struct DeliveryArgs {
    /// `off`: read --secrets-dir as it is (files put there by other means). `job`: copy the
    /// secrets the labels name into it with a Swarm job on this node; --secrets-dir must then
    /// be a named volume's mount point in swarm-lb's container (or give --secrets-volume).
    #[arg(long, env = "SWARM_LB_SECRETS_DELIVERY", value_enum, default_value_t = Delivery::Off)]
    pub secrets_delivery: Delivery,

    /// The named (node-local) volume mounted at --secrets-dir, which the job mounts too.
    /// Default: found by inspecting swarm-lb's own container.
    #[arg(long, env = "SWARM_LB_SECRETS_VOLUME")]
    pub secrets_volume: Option<String>,

    /// Image of the copy job: any image whose entrypoint is this swarm-lb binary. Default:
    /// swarm-lb's own container's image.
    #[arg(long, env = "SWARM_LB_SECRETS_JOB_IMAGE")]
    pub secrets_job_image: Option<String>,

    /// How long (seconds, > 0, at most 3600) a copy job may take before it counts as failed
    /// (removed, retried with backoff).
    #[arg(long, env = "SWARM_LB_SECRETS_JOB_TIMEOUT", default_value = "60", value_parser = secs_up_to(HOUR))]
    pub secrets_job_timeout: Duration,

    /// swarm-lb's own container (ID or name), inspected for its image and volumes. Default:
    /// read from /proc/self/mountinfo, else $HOSTNAME.
    #[arg(long, env = "SWARM_LB_SELF_CONTAINER")]
    pub self_container: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Where `swarm-lb run` listens (its --listen).
    #[arg(long, env = "SWARM_LB_LISTEN", default_value = LISTEN)]
    pub addr: SocketAddr,
    /// Print the status as JSON (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Where `swarm-lb run` listens (its --listen).
    #[arg(long, env = "SWARM_LB_LISTEN", default_value = LISTEN)]
    pub addr: SocketAddr,
    /// Check liveness (`/healthz`: the loops run) instead of readiness.
    #[arg(long)]
    pub live: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// This node's Docker endpoint: unix socket path, unix://, tcp:// or http:// URL. Container
    /// events and inspections and the HAProxy container's network attachments go here; Swarm
    /// state too unless --manager is given.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker: Option<String>,

    /// A Swarm manager's Docker endpoint (same forms as --docker), for services, tasks,
    /// networks and their events: what a worker node's engine cannot answer. Unset: --docker
    /// (which must then be a manager). Best through an API-filtering proxy such as
    /// `swarm-lb api-proxy` (docker-stack.yml's): GET of /_ping, /info, /version, /events,
    /// /services, /tasks, /networks, /secrets and /configs (lists), and the secrets copy
    /// job's service create and removal only (docs/several-nodes.md).
    #[arg(long, env = "SWARM_LB_MANAGER")]
    pub manager: Option<String>,

    /// HAProxy's admin socket (`stats socket ... level admin`), as this process sees it.
    #[arg(
        long,
        env = "SWARM_LB_ADMIN_SOCKET",
        default_value = "/var/run/haproxy/admin.sock"
    )]
    pub admin_socket: PathBuf,

    /// HAProxy's master CLI socket (`haproxy -W -S <path>`), used for reloads.
    #[arg(
        long,
        env = "SWARM_LB_MASTER_SOCKET",
        default_value = "/var/run/haproxy/master.sock"
    )]
    pub master_socket: PathBuf,

    /// Directory of the generated haproxy.cfg and hosts.map. HAProxy must see it at the same
    /// path (mount it at the same place in both containers).
    #[arg(
        long,
        env = "SWARM_LB_CONFIG_DIR",
        default_value = "/usr/local/etc/haproxy"
    )]
    pub config_dir: PathBuf,

    /// Base template for the generated config (global, defaults, frontend). Defaults to the
    /// built-in copy of haproxy/base.cfg.
    #[arg(long, env = "SWARM_LB_TEMPLATE")]
    pub template: Option<PathBuf>,

    /// `bind` address of the HTTP frontend; repeat for several.
    #[arg(
        long = "bind",
        env = "SWARM_LB_BIND",
        value_delimiter = ',',
        default_value = ":80"
    )]
    pub binds: Vec<String>,

    /// `bind` address of the HTTPS side of the frontend (TLS ends there, certificate chosen by
    /// SNI from a crt-list in `<config-dir>/certs`); repeat for several; empty: no HTTPS.
    #[arg(
        long = "https-bind",
        env = "SWARM_LB_HTTPS_BIND",
        value_delimiter = ',',
        default_value = ":443"
    )]
    pub https_binds: Vec<String>,

    /// Balancers in front of this one (`CIDR[,CIDR...]`, IPv4 or IPv6): HTTP balancers, whose
    /// X-Forwarded-For / X-Forwarded-Proto are kept (from anyone else, replaced), and, written
    /// `proxy:CIDR`, TCP balancers that open every connection on the HTTP and HTTPS binds with a
    /// PROXY protocol header (v1 or v2); from any other source such a header is refused.
    #[arg(long, env = "SWARM_LB_TRUSTED_PROXIES", value_delimiter = ',', value_parser = trusted_proxy)]
    pub trusted_proxies: Vec<Option<swarm_lb::model::access::TrustedProxy>>,

    /// Protocols and cipher suites of the HTTPS side, after Mozilla's server-side TLS
    /// guidelines: modern (TLS 1.3 only), intermediate (TLS 1.2 AEAD suites and 1.3) or old
    /// (TLS 1.0 and up, for ancient clients only).
    #[arg(long, env = "SWARM_LB_TLS_PROFILE", default_value = "intermediate")]
    pub tls_profile: swarm_lb::haproxy::tls_profile::TlsProfile,

    /// PEM file (certificate chain, then key) served for unknown or absent SNI. Without it a
    /// self-signed certificate is generated at first start (and logged so).
    #[arg(long, env = "SWARM_LB_DEFAULT_CERT")]
    pub default_cert: Option<PathBuf>,

    /// Directory holding the secrets `com.docker.lb.ssl_cert`/`ssl_key` name, one file per
    /// secret named after it (where Docker mounts a service's secrets).
    #[arg(long, env = "SWARM_LB_SECRETS_DIR", default_value = "/run/secrets")]
    pub secrets_dir: PathBuf,

    /// CA bundle that `com.docker.lb.ssl_backend_tls_verify=required` verifies tasks against
    /// (copied into the config dir for HAProxy). Missing: verification fails closed.
    #[arg(
        long,
        env = "SWARM_LB_BACKEND_CA_FILE",
        default_value = swarm_lb::haproxy::tls::SYSTEM_CA_BUNDLE
    )]
    pub backend_ca_file: PathBuf,

    /// Slots are added to a task-mode backend in blocks of this many.
    #[arg(long, env = "SWARM_LB_SLOT_BLOCK", default_value_t = 42, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub slot_block: u16,

    /// Network (name or id) for services on several networks without com.docker.lb.network.
    #[arg(long, env = "SWARM_LB_DEFAULT_NETWORK")]
    pub default_network: Option<String>,

    /// Serve only services labelled com.docker.lb.service_cluster=<this>; unset or empty: only
    /// services without that label.
    #[arg(long, env = "SWARM_LB_SERVICE_CLUSTER")]
    pub service_cluster: Option<String>,

    /// HAProxy container (name or id) to attach to the routed services' networks. Without it
    /// swarm-lb attaches nothing and expects HAProxy to reach the services already.
    #[arg(long, env = "SWARM_LB_HAPROXY_CONTAINER")]
    pub haproxy_container: Option<String>,

    /// Networks (names or ids) never detached from the HAProxy container; repeat for several.
    #[arg(
        long = "keep-network",
        env = "SWARM_LB_KEEP_NETWORKS",
        value_delimiter = ','
    )]
    pub keep_networks: Vec<String>,

    /// Never grow slots with `add server`; grow by reload instead.
    #[arg(long, env = "SWARM_LB_NO_ADD_SERVER")]
    pub no_add_server: bool,

    /// Obtain certificates from an ACME CA for services labelled com.docker.lb.ssl_acme=true
    /// (docs/acme.md). Off: that label is refused.
    #[arg(long, env = "SWARM_LB_ACME")]
    pub acme: bool,

    /// The ACME CA's directory URL (https://). Try the CA's staging directory first (Let's
    /// Encrypt: https://acme-staging-v02.api.letsencrypt.org/directory): production's rate
    /// limits are strict.
    #[arg(long, env = "SWARM_LB_ACME_DIRECTORY", default_value = swarm_lb::acme::settings::LETS_ENCRYPT)]
    pub acme_directory: String,

    /// Contact e-mail of the ACME account (optional).
    #[arg(long, env = "SWARM_LB_ACME_EMAIL")]
    pub acme_email: Option<String>,

    /// PEM file of the one root certificate that signs the ACME server's HTTPS certificate
    /// (a private CA such as step-ca, or Pebble). Unset or empty: the system's trust store.
    // A String, not a PathBuf: clap's path parser refuses the empty value compose passes for
    // an unset `${SWARM_LB_ACME_CA_BUNDLE:-}`.
    #[arg(long, env = "SWARM_LB_ACME_CA_BUNDLE")]
    pub acme_ca_bundle: Option<String>,

    /// External account binding: the key identifier the CA gave (with --acme-eab-hmac-file).
    #[arg(long, env = "SWARM_LB_ACME_EAB_KID")]
    pub acme_eab_kid: Option<String>,

    /// External account binding: a file (a Docker secret) holding the MAC key the CA gave,
    /// base64url. A file, not a value: a value would show in `ps` and `docker inspect`.
    #[arg(long, env = "SWARM_LB_ACME_EAB_HMAC_FILE")]
    pub acme_eab_hmac_file: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,

    /// Full resync interval (seconds, > 0, at most 86400): a missed event costs at most this
    /// much latency.
    #[arg(long, env = "SWARM_LB_RESYNC", default_value = "30", value_parser = secs_up_to(DAY))]
    pub resync: Duration,

    /// How often (seconds, > 0, at most 3600) to check that HAProxy is still the same process.
    #[arg(long, env = "SWARM_LB_PROXY_CHECK", default_value = "1", value_parser = secs_up_to(HOUR))]
    pub proxy_check: Duration,

    /// Minimum gap (milliseconds, 1..=60000) between two passes; bursts within it coalesce.
    #[arg(long, env = "SWARM_LB_DEBOUNCE_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub debounce_ms: u64,

    /// While a service's tasks change, how often (milliseconds, 1..=60000) to re-list them
    /// (Swarm emits no task events).
    #[arg(long, env = "SWARM_LB_SETTLE_POLL_MS", default_value_t = ms(SettleOptions::POLL), value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub settle_poll_ms: u64,

    /// For the first 50 ms after an event, re-list a service's tasks this often
    /// (milliseconds, 0..=60000) instead: Swarm marks the tasks it stops a few milliseconds
    /// after the service event. 0: no burst.
    #[arg(long, env = "SWARM_LB_SETTLE_BURST_MS", default_value_t = ms(SettleOptions::BURST), value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub settle_burst_ms: u64,

    /// How long (seconds, > 0, at most 3600) to wait for a reload to finish before calling it
    /// failed.
    #[arg(long, env = "SWARM_LB_RELOAD_TIMEOUT", default_value = "30", value_parser = secs_up_to(HOUR))]
    pub reload_timeout: Duration,

    /// `runtime`: Runtime API, reload only when a backend appears or disappears. `reload`:
    /// rewrite and reload on every change (what reload-based drivers do; for comparison).
    #[arg(long, env = "SWARM_LB_STRATEGY", value_enum, default_value_t = Strategy::Runtime)]
    pub strategy: Strategy,

    /// Address (ip:port) of the HTTP listener: /metrics (Prometheus), /healthz, /readyz,
    /// /status. Loopback by default; in a container, `0.0.0.0:9270` and publish the port on
    /// the host's loopback.
    #[arg(long, env = "SWARM_LB_LISTEN", default_value = LISTEN)]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub create: CreateArgs,

    #[command(flatten)]
    pub delivery: DeliveryArgs,

    /// Other nodes' hint agents (`swarm-lb agent`), `host:port`, each resolved to all its
    /// addresses (`tasks.<agent service>:9271`); comma-separated for several. Their task
    /// container events reach this edge at once instead of at the next resync.
    #[arg(long, env = "SWARM_LB_HINTS", value_delimiter = ',')]
    pub hints: Vec<String>,
}

/// Creating (or adopting) this node's HAProxy container: for swarm-lb deployed as a global
/// Swarm service on edge nodes, where HAProxy must stay a plain container.
#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Create the HAProxy container (--haproxy-container) on this node if it does not exist, and
    /// start it if it is stopped. An existing container is adopted as it is, never restarted or
    /// recreated, so a swarm-lb restart or upgrade leaves HAProxy running.
    #[arg(long, env = "SWARM_LB_HAPROXY_CREATE")]
    pub haproxy_create: bool,

    /// Image of the created HAProxy container.
    #[arg(long, env = "SWARM_LB_HAPROXY_IMAGE", default_value = "haproxy:3.4")]
    pub haproxy_image: String,

    /// Named volume (node-local) of the created container holding the admin and master
    /// sockets, mounted at the sockets' directory; swarm-lb must mount the same volume there.
    #[arg(long, env = "SWARM_LB_RUN_VOLUME", default_value = "swarm-lb-run")]
    pub run_volume: String,

    /// Named volume (node-local) holding haproxy.cfg and hosts.map, mounted at --config-dir;
    /// swarm-lb must mount the same volume there.
    #[arg(
        long,
        env = "SWARM_LB_CONFIG_VOLUME",
        default_value = "swarm-lb-config"
    )]
    pub config_volume: String,

    /// Ports the created container publishes on the node's own addresses, `[ip:]host:container`;
    /// repeat or separate with commas.
    #[arg(long = "haproxy-publish", env = "SWARM_LB_HAPROXY_PUBLISH", value_delimiter = ',',
          default_value = "80:80", value_parser = parse_publish)]
    pub haproxy_publish: Vec<swarm::proxy::Publish>,
}

fn parse_publish(raw: &str) -> Result<swarm::proxy::Publish, String> {
    swarm::proxy::Publish::parse(raw).map_err(|e| e.to_string())
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

/// `swarm-lb run` with `args`, parsed (for the tests of the flags and of what they become).
/// One `--trusted-proxies` item; an empty one (compose passes an unset variable as empty) is
/// none.
fn trusted_proxy(item: &str) -> Result<Option<swarm_lb::model::access::TrustedProxy>, String> {
    match item.trim() {
        "" => Ok(None),
        item => item.parse().map(Some).map_err(|e| format!("{e}")),
    }
}

#[cfg(test)]
pub fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
    let argv = ["swarm-lb", "run"].iter().chain(args);
    match Cli::try_parse_from(argv)?.command {
        Cmd::Run(run) => Ok(*run),
        other => panic!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn check_takes_the_docker_endpoints_json_and_strict_and_its_help_defines_the_exit_status() {
        let cli = Cli::try_parse_from([
            "swarm-lb",
            "check",
            "--manager",
            "tcp://10.0.0.1:2375",
            "--service-cluster",
            "east",
            "--json",
        ])
        .expect("check");
        let Cmd::Check(args) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(args.manager.as_deref(), Some("tcp://10.0.0.1:2375"));
        assert_eq!(args.service_cluster.as_deref(), Some("east"));
        assert!(args.json && !args.strict);
        // `run`'s HAProxy and file flags are not check's: it has no use for them.
        assert!(Cli::try_parse_from(["swarm-lb", "check", "--admin-socket", "/x"]).is_err());
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let help = cmd
            .find_subcommand_mut("check")
            .expect("check")
            .render_long_help()
            .to_string();
        for status in ["Exit status: 0 ", "; 1 ", "; 2 "] {
            assert!(help.contains(status), "{status:?} in {help}");
        }
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

    #[test]
    fn the_second_defaults_the_cli_writes_are_the_librarys() {
        let a = run_args(&[]).expect("defaults");
        assert_eq!(a.resync, swarm::WatchOptions::RESYNC);
        assert_eq!(a.reload_timeout, RELOAD_TIMEOUT);
        let options = SettleOptions::polling(
            Duration::from_millis(a.settle_poll_ms),
            Duration::from_millis(a.settle_burst_ms),
        );
        assert_eq!(options, SettleOptions::default());
    }
}
