//! `swarm-lb`: the process. `run` drives HAProxy from Swarm; the other subcommands are in
//! `commands.rs`, the flags in `cli.rs`, what they become in `settings.rs`.

#![forbid(unsafe_code)]

mod allocator;
mod cli;
mod commands;
mod settings;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::task::JoinHandle;
use tracing::{error, info};

use swarm_lb::haproxy::render::{self, Files};
use swarm_lb::observe::{http, Observer};
use swarm_lb::reconcile::{self, bootstrap_config, secrets};
use swarm_lb::swarm;

use cli::{Cli, Cmd, RunArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.install_logs();
    match cli.command {
        Cmd::Run(args) => run(*args).await,
        Cmd::Plan(common) => commands::print_plan(*common).await,
        Cmd::Check(args) => commands::check(args).await,
        Cmd::Status(args) => commands::print_status(args).await,
        Cmd::Health(args) => commands::health(args).await,
        Cmd::CopySecrets(args) => commands::copy_secrets(args),
        Cmd::Agent(args) => commands::agent(args).await,
        Cmd::ApiProxy(args) => commands::api_proxy(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let settings = settings::settings(c, args.strategy, args.reload_timeout)?;
    let proxy = settings::proxy_spec(c, &args.create)?;
    // HAProxy (restarting until a config exists) should not wait on Docker: write first.
    let ca = render::backend_ca_path(&settings.render);
    let default_cert = c.default_cert.as_deref();
    reconcile::tls::prepare(
        &settings::cert_files(c),
        default_cert,
        &ca,
        &c.backend_ca_file,
    )
    .context("preparing the HTTPS bind's certificate files")?;
    if bootstrap_config(&mut Files::new(&c.config_dir), &settings)
        .context("writing the bootstrap config")?
    {
        info!(dir = %c.config_dir.display(), "no config found; wrote an empty one so HAProxy can start");
    }
    let docker = commands::connect(c).await?;
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
    let observer = Arc::new(Observer::new(settings::stall(&args)));
    let source = http::StatusSource {
        admin_socket: c.admin_socket.clone(),
        hosts_map: settings.plan.hosts_map.clone(),
    };
    let serve = http::serve(listener, observer.clone(), source);
    let mut tasks = vec![("http server", tokio::spawn(serve))];
    info!(listen = %args.listen, "serving /metrics, /healthz, /readyz, /status");
    let https = settings.render.https.is_some();
    let mut delivery = None;
    if let Some(job) = settings::delivery(c, &args.delivery, https, args.resync) {
        let (handle, worker) = secrets::start(&docker, job).await?;
        tasks.push(("secrets worker", worker));
        delivery = Some(handle);
    }
    let acme = settings::AcmeOn::new(c, &settings, delivery.is_some())?;
    let options = settings::watch_options(&args, &settings);
    let mut reconciler =
        settings::reconciler(c, settings, docker.clone(), delivery).with_observer(observer.clone());
    if let Some(acme) = acme {
        let task;
        (reconciler, task) = acme.start(reconciler, c, &docker, &observer).await?;
        tasks.push(("acme worker", task));
    }
    // The resync timer asks for a full read; this is the backstop.
    reconciler.set_full_read_every(args.resync * 2);
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
        let subscribe = swarm_lb::hints::subscribe::run(options, hints_tx, Some(observer));
        tasks.push(("hint subscriber", tokio::spawn(subscribe)));
        watcher = watcher.with_hints(hints_rx);
    }
    let watcher = tokio::spawn(watcher.run(tx));
    info!(strategy = ?args.strategy, "swarm-lb running");
    // Spawned, not polled by the thread blocking on main: on a worker thread the I/O driver
    // wakes it without a cross-thread hop, which cuts the admin-socket client's CPU per batch
    // (bench-micro; the figures are in README's benchmark section).
    let passes = reconcile::run(reconciler, rx, settings::timing(&args));
    tasks.push(("reconciler", tokio::spawn(passes)));
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

/// SIGTERM (what `docker stop` sends); never, where it cannot be listened to.
async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
}
