//! The Docker CLI (Debian's `/usr/bin/docker`, matching the engine) for test set-up: services,
//! networks, containers. Each helper panics with the command's stderr on failure: these are
//! test steps, not product code.

use std::collections::BTreeMap;
use std::process::Command;

/// The docker client matching the engine (`$DOCKER`, else Debian's `/usr/bin/docker`).
pub fn bin() -> String {
    std::env::var("DOCKER").unwrap_or_else(|_| "/usr/bin/docker".to_owned())
}

/// Run docker with `args`; stdout on success, else the command and its stderr.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    try_docker_on(None, args)
}

/// [`try_docker`] against the engine at `host` (`docker -H <host>`: `unix://<path>`,
/// `tcp://...`), or the default engine with `None`.
pub fn try_docker_on(host: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(bin());
    if let Some(host) = host {
        cmd.arg("-H").arg(host);
    }
    let shown = match host {
        Some(host) => format!("docker -H {host} {}", args.join(" ")),
        None => format!("docker {}", args.join(" ")),
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{shown}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The HAProxy image the stacks run: `$SWARM_LB_E2E_HAPROXY_IMAGE`, else the local 2.6 one
/// (`scripts/test.sh` runs the suite again with `swarm-lb/haproxy:3.4-local`).
pub fn haproxy_image() -> String {
    std::env::var("SWARM_LB_E2E_HAPROXY_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "swarm-lb/haproxy:2.6-local".to_owned())
}

/// The swarm-lb image the stacks run: `$SWARM_LB_IMAGE` (the tag `scripts/images.sh` built),
/// else `swarm-lb/swarm-lb:local`.
pub fn swarm_lb_image() -> String {
    std::env::var("SWARM_LB_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "swarm-lb/swarm-lb:local".to_owned())
}

/// Fail (never skip) when the engine or the images are missing, saying how to get them.
pub fn require_engine() {
    match try_docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) {
        Ok(state) if state == "active" => {}
        Ok(state) => panic!(
            "Docker engine is not in a Swarm (state {state:?}): run `bash scripts/setup.sh` \
             (it runs `docker swarm init --advertise-addr 127.0.0.1`)"
        ),
        Err(e) => panic!(
            "Docker engine not reachable ({e}): install and start it with `bash scripts/setup.sh` \
             (Debian's docker.io, dockerd, swarm init, local images)"
        ),
    }
    for image in [
        haproxy_image().as_str(),
        swarm_lb_image().as_str(),
        "swarm-lb/testapp:1",
        "swarm-lb/testapp:2",
    ] {
        if try_docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_err() {
            panic!("image {image} missing: build it with `bash scripts/images.sh`");
        }
    }
}

/// An attachable overlay network, removed on drop.
pub struct Network {
    pub name: String,
    pub id: String,
}

impl Network {
    pub fn create(name: &str) -> Network {
        let id = docker(&["network", "create", "-d", "overlay", "--attachable", name]);
        Network {
            name: name.to_owned(),
            id,
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Tasks may still be detaching: a few tries.
        for _ in 0..50 {
            if try_docker(&["network", "rm", &self.name]).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        eprintln!("could not remove network {}", self.name);
    }
}

/// The `docker` arguments that create test-app service `name` from `image`, with `args`
/// (labels, network, replicas...) added: detached, the task name in `TASK_NAME` (the app
/// answers with it), 20 s to drain on stop. [`Service::create`] runs them; so do the benches.
pub fn create_args(name: &str, image: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "--env",
        "TASK_NAME={{.Task.Name}}",
        "--stop-grace-period",
        "20s",
    ];
    all.extend_from_slice(args);
    plain_create_args(name, image, &all)
}

/// The `docker` arguments that create service `name` from `image` with `args` and nothing
/// else: detached, the image not resolved (local images), quiet.
pub fn plain_create_args(name: &str, image: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--quiet",
        "--name",
        name,
    ];
    all.extend_from_slice(args);
    all.push(image);
    all.into_iter().map(str::to_owned).collect()
}

/// A Swarm service running the test app, removed on drop.
pub struct Service {
    pub name: String,
}

impl Service {
    /// A test-app service of `image` that one stack routes: on `net`, `replicas` tasks, the
    /// hosts label `host`, port 8080, and `cluster`'s `com.docker.lb.service_cluster` (each
    /// stack of a suite has its own), with `extra` arguments added.
    pub fn routed(
        name: &str,
        image: &str,
        cluster: &str,
        net: &Network,
        host: &str,
        replicas: u32,
        extra: &[&str],
    ) -> Service {
        let labels = [
            format!("com.docker.lb.hosts={host}"),
            "com.docker.lb.port=8080".to_owned(),
            format!("com.docker.lb.service_cluster={cluster}"),
        ];
        let replicas = replicas.to_string();
        let mut args: Vec<&str> = vec!["--network", &net.name, "--replicas", &replicas];
        for l in &labels {
            args.extend(["--label", l]);
        }
        args.extend_from_slice(extra);
        Service::create(name, image, &args)
    }

    /// `docker service create` of `image` with `args` (labels, network, replicas...) added.
    pub fn create(name: &str, image: &str, args: &[&str]) -> Service {
        let all = create_args(name, image, args);
        docker(&all.iter().map(String::as_str).collect::<Vec<_>>());
        Service {
            name: name.to_owned(),
        }
    }

    /// `docker service update` with `args`, waiting (not detached) until it converged.
    pub fn update(&self, args: &[&str]) {
        let mut all = vec![
            "service",
            "update",
            "--detach=false",
            "--quiet",
            "--no-resolve-image",
        ];
        all.extend_from_slice(args);
        all.push(&self.name);
        docker(&all);
    }

    /// Scale and return at once (the tests watch convergence themselves).
    pub fn scale(&self, replicas: u32) {
        docker(&[
            "service",
            "scale",
            "--detach",
            &format!("{}={replicas}", self.name),
        ]);
    }

    /// The service's VIP on `network_id`, CIDR suffix stripped.
    pub fn vip(&self, network_id: &str) -> Option<String> {
        let out = docker(&[
            "service",
            "inspect",
            "--format",
            "{{json .Endpoint.VirtualIPs}}",
            &self.name,
        ]);
        let vips: serde_json::Value = serde_json::from_str(&out).ok()?;
        vips.as_array()?.iter().find_map(|v| {
            (v["NetworkID"].as_str()? == network_id)
                .then(|| v["Addr"].as_str())
                .flatten()
                .and_then(|a| a.split('/').next())
                .map(str::to_owned)
        })
    }

    /// Addresses (on `network_id`) of the tasks Swarm reports running with desired state running.
    pub fn running_task_ips(&self, network_id: &str) -> Vec<String> {
        let ids = docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &self.name,
        ]);
        let mut ips = Vec::new();
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let Ok(out) = try_docker(&["inspect", "--format", "{{json .}}", id]) else {
                continue;
            };
            let Ok(task) = serde_json::from_str::<serde_json::Value>(&out) else {
                continue;
            };
            if task["Status"]["State"] != "running" {
                continue;
            }
            for att in task["NetworksAttachments"].as_array().into_iter().flatten() {
                if att["Network"]["ID"] == network_id {
                    for a in att["Addresses"].as_array().into_iter().flatten() {
                        if let Some(ip) = a.as_str().and_then(|a| a.split('/').next()) {
                            ips.push(ip.to_owned());
                        }
                    }
                }
            }
        }
        ips.sort();
        ips
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = try_docker(&["service", "rm", &self.name]);
    }
}

/// Network ids a container is attached to.
pub fn container_networks(container: &str) -> Vec<String> {
    let out = docker(&[
        "inspect",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$v.NetworkID}} {{end}}",
        container,
    ]);
    out.split_whitespace().map(str::to_owned).collect()
}

/// The arguments of `docker config ls` that print each ACME order lease's labels, a line each.
pub const ACME_LEASES_LS: [&str; 6] = [
    "config",
    "ls",
    "--filter",
    "label=com.docker.lb.acme=lock",
    "--format",
    "{{.Labels}}",
];

/// The labels (`key=value` pairs) of the lease whose line of `listing` (the output of
/// [`ACME_LEASES_LS`]) contains `needle`, if there is one.
pub fn acme_lease_labels(listing: &str, needle: &str) -> Option<BTreeMap<String, String>> {
    let line = listing.lines().find(|l| l.contains(needle))?;
    Some(
        line.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod lease_tests {
    use super::acme_lease_labels;

    #[test]
    fn a_lease_line_of_config_ls_reads_back_as_its_labels() {
        let listing = "com.docker.lb.acme=lock,com.docker.lb.acme.holder=n1/c1,com.docker.lb.acme.hosts=a.example\n\
                       com.docker.lb.acme=lock,com.docker.lb.acme.holder=n2/c2,com.docker.lb.acme.hosts=b.example";
        let labels = acme_lease_labels(listing, "b.example").unwrap();
        assert_eq!(labels["com.docker.lb.acme.holder"], "n2/c2");
        assert_eq!(labels["com.docker.lb.acme"], "lock");
        assert!(acme_lease_labels(listing, "c.example").is_none());
    }
}
