//! One strategy's world: the repo's compose stack on the local images under a project of its
//! own, serving only services labelled with its own service cluster, plus the overlay
//! networks and services the phases create. Everything is removed on drop, in an order that
//! lets each removal succeed: services (and their containers) first, then the stack (which
//! takes HAProxy off the networks), then the networks. A run killed before it could clean up
//! is cleaned up by the next one ([`cleanup_leftovers`]).

use std::path::Path;
use std::time::Duration;

use swarm_lb_e2e::docker::{create_args, plain_create_args, try_docker, Network, Service};
use swarm_lb_e2e::stack::{self, Stack};
use swarm_lb_e2e::unique;

use super::{docker, APP_PORT};

/// The container label every task of a bench service carries, valued per [`Bench`].
const RUN_LABEL: &str = "swarm-lb-bench.run";
/// Name prefixes, each followed by `<pid>`: what [`cleanup_leftovers`] recognises.
const SERVICE_PREFIX: &str = "bsw";
const NETWORK_PREFIX: &str = "bswnet";
const PROJECT_PREFIX: &str = "slbbsw";

/// How swarm-lb changes HAProxy (`SWARM_LB_STRATEGY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// swarm-lb's runtime strategy on the default HAProxy image (2.6).
    Runtime,
    /// The runtime strategy on HAProxy 3.4 (`swarm-lb/haproxy:3.4-local`), which creates and
    /// deletes backends without a reload.
    Runtime34,
    /// Every change a config write and a reload (2.6).
    Reload,
}

/// The HAProxy image of [`Strategy::Runtime34`] (`scripts/images.sh haproxy-3.4`).
pub const HAPROXY_3_4_IMAGE: &str = "swarm-lb/haproxy:3.4-local";

impl Strategy {
    /// The column's name: `runtime`, `runtime-3.4`, `reload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Runtime => "runtime",
            Strategy::Runtime34 => "runtime-3.4",
            Strategy::Reload => "reload",
        }
    }

    /// swarm-lb's `--strategy` for this column.
    pub fn driver_strategy(self) -> &'static str {
        match self {
            Strategy::Runtime | Strategy::Runtime34 => "runtime",
            Strategy::Reload => "reload",
        }
    }

    /// The product (the runtime strategy), held to its targets, on either HAProxy.
    pub fn is_runtime(self) -> bool {
        self.driver_strategy() == "runtime"
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "runtime" => Some(Strategy::Runtime),
            "runtime-3.4" => Some(Strategy::Runtime34),
            "reload" => Some(Strategy::Reload),
            _ => None,
        }
    }
}

/// A network the bench created: name and id.
#[derive(Debug, Clone)]
pub struct Net {
    pub name: String,
    pub id: String,
}

pub struct Bench {
    pub strategy: Strategy,
    pub cluster: String,
    run: String,
    // Drop order matters (fields drop in declaration order, after `Drop::drop`): the stack
    // before the networks, so that HAProxy has left them.
    pub stack: Stack,
    networks: Vec<Network>,
}

impl Bench {
    /// Brings the compose stack up with `strategy` (panics, after cleaning up, if it cannot:
    /// the harness's `Stack::up` does).
    pub async fn up(strategy: Strategy) -> Bench {
        let cluster = unique("bswc");
        let project = format!("{PROJECT_PREFIX}{}x{}", std::process::id(), cluster_seq());
        let mut env = vec![
            ("SWARM_LB_SERVICE_CLUSTER", cluster.clone()),
            ("SWARM_LB_STRATEGY", strategy.driver_strategy().to_owned()),
        ];
        if strategy == Strategy::Runtime34 {
            // After the harness's own HAPROXY_IMAGE: the later value wins.
            env.push(("HAPROXY_IMAGE", HAPROXY_3_4_IMAGE.to_owned()));
        }
        // Another build of swarm-lb than scripts/images.sh's shared tag.
        if let Ok(image) = std::env::var("SWARM_LB_IMAGE") {
            env.push(("SWARM_LB_IMAGE", image));
        }
        // To dig into a figure: e.g. BENCH_SWARM_RUST_LOG=swarm_lb=debug.
        if let Ok(filter) = std::env::var("BENCH_SWARM_RUST_LOG") {
            env.push(("RUST_LOG", filter));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let stack = Stack::up_named(&project, &env).await;
        Bench {
            strategy,
            run: cluster.clone(),
            cluster,
            stack,
            networks: Vec::new(),
        }
    }

    /// A new attachable overlay network, removed with the bench.
    pub async fn network(&mut self) -> anyhow::Result<Net> {
        let name = unique(NETWORK_PREFIX);
        let id = docker(&["network", "create", "-d", "overlay", "--attachable", &name]).await?;
        self.networks.push(Network {
            name: name.clone(),
            id: id.clone(),
        });
        Ok(Net { name, id })
    }

    /// A routed test-app service on `net` for `host`, with `extra` arguments of
    /// `docker service create`. Removed when the returned guard drops.
    pub async fn service(
        &self,
        net: &Net,
        host: &str,
        replicas: u32,
        extra: &[&str],
    ) -> anyhow::Result<Service> {
        let (name, args) = self.service_command(net, host, replicas, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args).await?;
        Ok(Service { name })
    }

    /// The name and `docker` arguments that create such a service (for callers that run
    /// several creations at once).
    pub fn service_command(
        &self,
        net: &Net,
        host: &str,
        replicas: u32,
        extra: &[&str],
    ) -> (String, Vec<String>) {
        let name = unique(SERVICE_PREFIX);
        let replicas = replicas.to_string();
        let run = format!("{RUN_LABEL}={}", self.run);
        let hosts = format!("com.docker.lb.hosts={host}");
        let port = format!("com.docker.lb.port={APP_PORT}");
        let cluster = format!("com.docker.lb.service_cluster={}", self.cluster);
        let mut args = vec![
            "--network",
            &net.name,
            "--replicas",
            &replicas,
            "--container-label",
            &run,
            "--label",
            &hosts,
            "--label",
            &port,
            "--label",
            &cluster,
        ];
        args.extend_from_slice(extra);
        let args = create_args(&name, super::APP1, &args);
        (name, args)
    }

    /// A service no instance routes (no `com.docker.lb.*` label): another workload on the
    /// node. Removed when the returned guard drops.
    pub async fn unrouted_service(&self, replicas: u32) -> anyhow::Result<Service> {
        let name = unique(SERVICE_PREFIX);
        let replicas = replicas.to_string();
        let run = format!("{RUN_LABEL}={}", self.run);
        let args = ["--replicas", &replicas, "--container-label", &run];
        let all = plain_create_args(&name, super::APP1, &args);
        docker(&all.iter().map(String::as_str).collect::<Vec<_>>()).await?;
        Ok(Service { name })
    }

    /// Containers of this bench's services still present.
    fn containers_left(&self) -> usize {
        try_docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label={RUN_LABEL}={}", self.run),
        ])
        .map(|out| out.lines().filter(|l| !l.is_empty()).count())
        .unwrap_or(0)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        // The phases' service guards are gone by now; wait for their containers, which hold
        // endpoints on the networks, before the networks are removed.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while self.containers_left() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn cluster_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The pid in `<prefix><sep><pid><rest>`, when the name has that shape.
fn pid_in(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn dead(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove services, compose stacks and networks left by bench runs whose process is gone.
/// Returns what it removed.
pub fn cleanup_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    let lines = |args: &[&str]| -> Vec<String> {
        try_docker(args)
            .map(|o| o.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    for name in lines(&["service", "ls", "--format", "{{.Name}}"]) {
        if name.starts_with(NETWORK_PREFIX) {
            continue;
        }
        if pid_in(&name, SERVICE_PREFIX).is_some_and(dead)
            && try_docker(&["service", "rm", &name]).is_ok()
        {
            removed.push(format!("service {name}"));
        }
    }
    let mut projects = lines(&[
        "ps",
        "-a",
        "--format",
        "{{.Label \"com.docker.compose.project\"}}",
    ]);
    projects.sort();
    projects.dedup();
    for p in projects {
        if pid_in(&p, PROJECT_PREFIX).is_some_and(dead) && stack::down_project(&p).is_ok() {
            removed.push(format!("compose project {p}"));
        }
    }
    for name in lines(&["network", "ls", "--format", "{{.Name}}"]) {
        if pid_in(&name, NETWORK_PREFIX).is_some_and(dead) {
            // Tasks of removed services may still hold it for a moment.
            let gone = (0..40).any(|_| {
                let ok = try_docker(&["network", "rm", &name]).is_ok();
                if !ok {
                    std::thread::sleep(Duration::from_millis(250));
                }
                ok
            });
            if gone {
                removed.push(format!("network {name}"));
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names_give_back_the_pid_of_their_run() {
        assert_eq!(pid_in("bsw-1234-7", SERVICE_PREFIX), Some(1234));
        assert_eq!(pid_in("bswnet-99-0", NETWORK_PREFIX), Some(99));
        assert_eq!(pid_in("slbbsw4321x0", PROJECT_PREFIX), Some(4321));
        assert_eq!(pid_in("svc-1234-7", SERVICE_PREFIX), None);
        assert_eq!(pid_in("bsw-x", SERVICE_PREFIX), None);
    }
}
