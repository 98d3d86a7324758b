//! The command line's values turned into the library's settings: what the reconciler, the
//! watcher, the pass loop, secrets delivery and the created HAProxy container are given.
//! Part of the binary (not the library); each default is written once, in the library or in
//! `cli.rs`, and the `service_cluster` filter (unset or empty: no cluster) is applied here
//! only, for both the model and the watcher.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use tracing::info;

use swarm_lb::acme::settings::AcmeFlags;
use swarm_lb::acme::AcmeSettings;
use swarm_lb::haproxy::render::{self, Files, HttpsSettings, RenderSettings};
use swarm_lb::haproxy::tls::CertFiles;
use swarm_lb::haproxy::{AdminClient, MapPath, Master};
use swarm_lb::model;
use swarm_lb::plan::PlanSettings;
use swarm_lb::reconcile::auth::AuthLists;
use swarm_lb::reconcile::secrets::{DeliveryHandle, JobRequest};
use swarm_lb::reconcile::tls::TlsCerts;
use swarm_lb::reconcile::{Reconciler, Settings, Strategy, Timing};
use swarm_lb::swarm;

use crate::cli::{Common, CreateArgs, Delivery, DeliveryArgs, RunArgs};

/// The reconciler's settings: the template read and checked with the HAProxy paths.
///
/// Errors: an unreadable template, a config dir that is no valid map path, a template that
/// does not take the paths, a refused `--acme*` value ([`acme`]).
pub fn settings(
    c: &Common,
    strategy: Strategy,
    reload_timeout: Duration,
) -> anyhow::Result<Settings> {
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
        userlists: Default::default(),
    };
    render
        .validate()
        .context("checking the template and the HAProxy paths")?;
    // Checked here for `run` and `plan` alike; `run` starts the worker from it.
    acme(c, &render.template)?;
    Ok(Settings {
        model: model::Settings {
            template_without_lua: !render.loads_lua(),
            ..model_settings(
                c.default_network.as_deref(),
                c.service_cluster.as_deref(),
                c.acme,
            )
        },
        plan: PlanSettings {
            block: usize::from(c.slot_block),
            add_server: !c.no_add_server,
            hosts_map: hosts_map.clone(),
            runtime_backends: Default::default(),
            connect_timeout_rule: false,
        },
        render,
        haproxy_container: c.haproxy_container.clone(),
        keep_networks: c.keep_networks.iter().cloned().collect::<BTreeSet<_>>(),
        reload_timeout,
        strategy,
    })
}

/// The model's settings: `--default-network`, `--service-cluster` (unset or empty: no
/// cluster) and `--acme`. `run`, `plan` and `check` read services through these.
pub fn model_settings(
    default_network: Option<&str>,
    service_cluster: Option<&str>,
    acme: bool,
) -> model::Settings {
    model::Settings {
        default_network: default_network.map(str::to_owned),
        service_cluster: service_cluster.filter(|s| !s.is_empty()).map(str::to_owned),
        template_without_lua: false,
        acme,
    }
}

/// The ACME settings, when `--acme` is on; checked once at start so a bad value stops
/// swarm-lb with an error naming the flag (nothing of the EAB MAC key is in it).
///
/// Errors: a refused `--acme*` value, or a template without the challenge map placeholder.
pub fn acme(c: &Common, template: &str) -> anyhow::Result<Option<AcmeSettings>> {
    if !c.acme {
        return Ok(None);
    }
    if !swarm_lb::acme::settings::template_answers_challenges(template) {
        anyhow::bail!(
            "--acme: the template has no {} placeholder outside comments, so HAProxy could not \
             answer the CA's HTTP-01 requests (see haproxy/base.cfg)",
            render::ACME_MAP
        );
    }
    let flags = AcmeFlags {
        directory: &c.acme_directory,
        email: c.acme_email.as_deref(),
        // Empty from compose's `${SWARM_LB_ACME_CA_BUNDLE:-}`: none.
        ca_bundle: c
            .acme_ca_bundle
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(std::path::Path::new),
        eab_kid: c.acme_eab_kid.as_deref(),
        eab_hmac_file: c
            .acme_eab_hmac_file
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(std::path::Path::new),
    };
    Ok(Some(AcmeSettings::new(&flags)?))
}

/// `--acme` for `run`: the settings checked, with what the worker and the pass need.
pub struct AcmeOn {
    acme: AcmeSettings,
    hosts_map: MapPath,
}

impl AcmeOn {
    /// `None` when `--acme` is off.
    ///
    /// Errors: a refused `--acme*` value ([`acme`]), or no HTTPS bind or no secrets delivery
    /// (`--secrets-delivery=job`) to go with it: the certificates are served on the HTTPS
    /// bind, and every edge reads them from Docker secrets. Checked before Docker is asked.
    pub fn new(
        c: &Common,
        settings: &Settings,
        delivery: &DeliveryArgs,
    ) -> anyhow::Result<Option<Self>> {
        let delivered = delivery.secrets_delivery != Delivery::Off;
        let Some(acme) = acme(c, &settings.render.template)? else {
            return Ok(None);
        };
        if settings.render.https.is_none() {
            anyhow::bail!("--acme needs --https-bind: the certificates are served there");
        }
        if !delivered {
            anyhow::bail!(
                "--acme needs --secrets-delivery=job: every edge reads the certificates from \
                 Docker secrets"
            );
        }
        Ok(Some(Self {
            acme,
            hosts_map: settings.plan.hosts_map.clone(),
        }))
    }

    /// `reconciler` with automatic certificates: the worker started (its task returned for
    /// the daemon to supervise), the pass's side attached.
    ///
    /// Errors: this node's Swarm node ID unreadable.
    pub async fn start(
        self,
        reconciler: Reconciler,
        c: &Common,
        docker: &swarm_lb::swarm::Docker,
        observer: &std::sync::Arc<swarm_lb::observe::Observer>,
    ) -> anyhow::Result<(Reconciler, tokio::task::JoinHandle<()>)> {
        let holder = acme_holder(docker).await?;
        info!(
            directory = %self.acme.directory,
            ca_bundle = self.acme.ca_bundle.is_some(),
            eab = self.acme.eab.is_some(),
            %holder,
            "ACME configured"
        );
        let worker =
            swarm_lb::acme::worker::WorkerSettings::new(self.acme, holder, c.secrets_dir.clone());
        let (handle, task) =
            swarm_lb::acme::worker::spawn(docker.clone(), worker, Some(observer.clone()));
        let certs = swarm_lb::reconcile::acme::AcmeCerts::new(
            handle,
            swarm_lb::haproxy::acme::acme_map(&self.hosts_map),
            Files::new(&c.config_dir),
        );
        Ok((reconciler.with_acme(certs), task))
    }
}

/// This edge's name in ACME order leases: `<Swarm node ID>/<container ID or hostname>`.
///
/// Errors: the node ID cannot be read (the engine is in no Swarm).
pub async fn acme_holder(docker: &swarm_lb::swarm::Docker) -> anyhow::Result<String> {
    let node = docker
        .local_node_id()
        .await
        .context("--acme: this node's Swarm node ID (the order lease names it)")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let hostname = std::env::var("HOSTNAME").ok();
    let me = swarm_lb::reconcile::secrets::own_container_id(&mountinfo, hostname.as_deref())
        .unwrap_or_else(|| std::process::id().to_string());
    Ok(format!("{node}/{me}"))
}

/// The certificate files under the config dir.
pub fn cert_files(c: &Common) -> CertFiles {
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

/// The reconciler, with the HTTPS bind's certificates when `settings` has one, and the
/// basic-auth user lists (their secrets, and the certificates', delivered by `delivery`, when
/// given).
pub fn reconciler(
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
    let auth = AuthLists::new(&c.secrets_dir);
    let reconciler = reconciler.with_auth(match &delivery {
        Some(d) => auth.with_delivery(d.clone()),
        None => auth,
    });
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

/// What the watcher is given: `run`'s intervals, and the same `service_cluster` as the model.
pub fn watch_options(args: &RunArgs, settings: &Settings) -> swarm::WatchOptions {
    swarm::WatchOptions {
        resync: args.resync,
        settle: swarm::SettleOptions::polling(
            Duration::from_millis(args.settle_poll_ms),
            Duration::from_millis(args.settle_burst_ms),
        ),
        service_cluster: settings.model.service_cluster.clone(),
        ..swarm::WatchOptions::default()
    }
}

/// When passes run.
pub fn timing(args: &RunArgs) -> Timing {
    Timing {
        resync: args.resync,
        proxy_check: args.proxy_check,
        debounce: Duration::from_millis(args.debounce_ms),
        retry: Duration::from_millis(200),
        max_retry: Duration::from_secs(10),
    }
}

/// How long the pass loop may stall before `/healthz` says so: a pass may wait for a reload
/// and then for the new worker (twice the reload timeout).
pub fn stall(args: &RunArgs) -> Duration {
    args.reload_timeout * 2 + args.proxy_check + Duration::from_secs(60)
}

/// What `--secrets-delivery=job` asks of [`swarm_lb::reconcile::secrets::start`]; `None`
/// when delivery is off, or without an HTTPS bind (a warning: nothing would be served).
pub fn delivery(
    c: &Common,
    a: &DeliveryArgs,
    https: bool,
    recheck: Duration,
) -> Option<JobRequest> {
    if a.secrets_delivery == Delivery::Off {
        return None;
    }
    if !https {
        // Basic auth's htpasswd files are secrets too: delivery serves them without HTTPS.
        info!(
            "--secrets-delivery=job without an HTTPS bind: only basic-auth user lists are copied"
        );
    }
    Some(JobRequest {
        dir: c.secrets_dir.clone(),
        volume: a.secrets_volume.clone(),
        image: a.secrets_job_image.clone(),
        self_container: a.self_container.clone(),
        timeout: a.secrets_job_timeout,
        recheck,
    })
}

/// The container spec `--haproxy-create` creates with; `None` without that flag.
///
/// Errors: `--haproxy-create` without `--haproxy-container`, or a malformed name, image,
/// volume or path.
pub fn proxy_spec(c: &Common, a: &CreateArgs) -> anyhow::Result<Option<swarm::proxy::ProxySpec>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::run_args;

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
    fn acme_is_off_by_default_and_on_with_lets_encrypt_unless_told_otherwise() {
        let template = render::BASE_TEMPLATE;
        let a = run_args(&[]).expect("parses");
        assert!(acme(&a.common, template).expect("fine").is_none());
        let a = run_args(&["--acme", "--acme-email=ops@a.example"]).expect("parses");
        let s = acme(&a.common, template).expect("fine").expect("on");
        assert_eq!(s.directory, swarm_lb::acme::settings::LETS_ENCRYPT);
        assert_eq!(s.contact.as_deref(), Some("mailto:ops@a.example"));
    }

    #[test]
    fn bad_acme_values_stop_the_start_with_the_flag_named() {
        let cases: [(&[&str], &str); 4] = [
            (
                &["--acme", "--acme-directory=http://ca.example/dir"],
                "--acme-directory",
            ),
            (&["--acme", "--acme-email=nobody"], "--acme-email"),
            (&["--acme", "--acme-eab-kid=k"], "--acme-eab-hmac-file"),
            (
                &["--acme", "--acme-ca-bundle=/nonexistent/ca.pem"],
                "--acme-ca-bundle",
            ),
        ];
        for (args, flag) in cases {
            let a = run_args(args).expect("parses");
            let e = acme(&a.common, render::BASE_TEMPLATE).expect_err("refused");
            assert!(format!("{e:#}").contains(flag), "{args:?}: {e:#}");
        }
        let a = run_args(&["--acme"]).expect("parses");
        let e = acme(&a.common, "frontend http\n").expect_err("no placeholder");
        assert!(e.to_string().contains("{{acme_map}}"), "{e}");
    }
}
