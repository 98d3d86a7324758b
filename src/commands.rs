//! The subcommands other than `run`: `plan` (what `run` would do now), `check` (what `run`
//! would do with each service, from Docker alone), `status` and `health` (asking a running
//! `run` over HTTP), `agent` (a node's hint agent) and `copy-secrets` (the secrets copy job's
//! side). Part of the binary (not the library).

use anyhow::Context;
use tracing::{info, warn};

use swarm_lb::observe::{self, http};
use swarm_lb::reconcile::secrets;
use swarm_lb::reconcile::Strategy;
use swarm_lb::swarm;

use crate::cli::{
    AgentArgs, ApiProxyArgs, CheckArgs, Common, CopySecretsArgs, HealthArgs, StatusArgs,
    RELOAD_TIMEOUT,
};
use crate::settings;

pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
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
        () = crate::sigterm() => info!("terminated; stopping"),
        r = tokio::signal::ctrl_c() => { r.context("signal")?; }
    }
    Ok(())
}

pub async fn api_proxy(args: ApiProxyArgs) -> anyhow::Result<()> {
    let socket =
        std::path::PathBuf::from(args.docker.strip_prefix("unix://").unwrap_or(&args.docker));
    let mut images: Vec<String> = args
        .job_images
        .into_iter()
        .filter(|i| !i.is_empty())
        .collect();
    if images.is_empty() {
        // This proxy's own image, as its container reports it.
        let docker = swarm::Docker::connect(Some(&args.docker))
            .await
            .context("connecting to this node's Docker (--docker / DOCKER_HOST)")?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let hostname = std::env::var("HOSTNAME").ok();
        match secrets::own_container_id(&mountinfo, hostname.as_deref()) {
            Some(id) => match docker.own_container(&id).await {
                Ok(own) if !own.image.is_empty() => images.push(own.image),
                Ok(_) => warn!("api-proxy: own container reports no image"),
                Err(e) => warn!(error = %e, "api-proxy: inspecting own container failed"),
            },
            None => warn!("api-proxy: cannot tell own container"),
        }
    }
    if images.is_empty() {
        warn!(
            "api-proxy: no copy-job image allowed (give --job-images): every copy job is refused"
        );
    }
    info!(listen = %args.listen, socket = %socket.display(), job_images = ?images, job_volumes = ?args.job_volumes, "api-proxy serving");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (--listen)", args.listen))?;
    let upstream = std::sync::Arc::new(swarm::apiproxy::Upstream {
        socket,
        jobs: swarm::apiproxy::JobPolicy {
            images,
            volumes: args.job_volumes,
        },
    });
    tokio::select! {
        () = swarm::apiproxy::serve(listener, upstream) => {}
        () = crate::sigterm() => info!("terminated; stopping"),
        r = tokio::signal::ctrl_c() => { r.context("signal")?; }
    }
    Ok(())
}

pub fn copy_secrets(args: CopySecretsArgs) -> anyhow::Result<()> {
    for (name, bytes) in secrets::copy_secrets(&args.from, &args.to, &args.names)? {
        info!(secret = %name, bytes, "secret copied");
    }
    Ok(())
}

pub async fn print_status(args: StatusArgs) -> anyhow::Result<()> {
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

pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
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

/// `swarm-lb check`: lists Swarm (nothing else: no HAProxy, no file), prints the verdicts and
/// exits with [`swarm_lb::check::exit_status`]; 2 when Docker cannot be listed or the report
/// cannot be written (a closed pipe), so that 1 always means "refused".
pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    use std::io::Write;
    use swarm_lb::check::{self, ExitStatus};
    let listed = async {
        let docker = swarm::Docker::connect_split(args.manager.as_deref(), args.docker.as_deref())
            .await
            .context(
                "connecting to Docker (--docker / DOCKER_HOST, --manager / SWARM_LB_MANAGER)",
            )?;
        docker
            .check_manager()
            .await
            .context("checking the Swarm-state engine")?;
        docker.snapshot().await.context("listing Swarm")
    };
    let snap = match listed.await {
        Ok(snap) => snap,
        Err(e) => {
            eprintln!("swarm-lb check: {e:#}");
            std::process::exit(ExitStatus::Unreachable as i32)
        }
    };
    let settings = settings::model_settings(
        args.default_network.as_deref(),
        args.service_cluster.as_deref(),
        args.acme,
    );
    let checks = check::check(&snap, &settings);
    let written = (|| {
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &checks)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", check::render(&checks))?;
        }
        out.flush()
    })();
    if let Err(e) = written {
        eprintln!("swarm-lb check: writing the report: {e}");
        std::process::exit(ExitStatus::Unreachable as i32)
    }
    std::process::exit(check::exit_status(&checks, args.strict) as i32)
}

pub async fn print_plan(c: Common) -> anyhow::Result<()> {
    let settings = settings::settings(&c, Strategy::Runtime, RELOAD_TIMEOUT)?;
    let docker = connect(&c).await?;
    let snap = docker.snapshot().await.context("listing Swarm")?;
    let mut reconciler = settings::reconciler(&c, settings, docker, None);
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

/// This node's engine and the manager's (`--manager`), checked: the Swarm-state engine must
/// be a manager, so that a worker's socket alone is a start-up error that says what to give.
pub async fn connect(c: &Common) -> anyhow::Result<swarm::Docker> {
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
