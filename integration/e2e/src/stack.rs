//! The product as operators run it: `docker-compose.yml` at the repo root, on the locally built
//! images, under a project name of its own with HTTP published on a free loopback port. The
//! sockets and generated files are read from the host through the named volumes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use swarm_lb::haproxy::codec::{self, ServerRow};
use swarm_lb::haproxy::{Admin, AdminClient, Master};

use crate::docker::{docker, require_engine, try_docker};
use crate::{free_port, poll_until};

pub struct Stack {
    pub project: String,
    pub http_port: u16,
    /// The HTTPS port published on loopback (`SWARM_LB_HTTPS_PORT`).
    pub https_port: u16,
    /// swarm-lb's HTTP listener (/metrics, /healthz, /readyz, /status) on the host's loopback.
    pub metrics_port: u16,
    /// HAProxy's own exporter and stats page on the host's loopback.
    pub stats_port: u16,
    pub haproxy_container: String,
    pub swarm_lb_container: String,
    run_dir: PathBuf,
    config_dir: PathBuf,
    compose_file: PathBuf,
    /// A compose override file the test wrote (e.g. a Docker socket proxy, a small tmpfs).
    override_file: Option<PathBuf>,
    env: Vec<(String, String)>,
}

/// What keeps a test stack apart from any other on the engine, a product stack
/// (`scripts/run.sh`) included: its own compose project (so its own volumes), its own HAProxy
/// container name, and every port the compose file publishes on a free loopback port, in the
/// order HTTP, HTTPS, metrics, stats.
fn isolated_env(project: &str, haproxy_container: &str, ports: [u16; 4]) -> Vec<(String, String)> {
    let [http, https, metrics, stats] = ports;
    let on_loopback = |port: u16| format!("127.0.0.1:{port}");
    vec![
        ("COMPOSE_PROJECT_NAME".into(), project.to_owned()),
        (
            "SWARM_LB_HAPROXY_CONTAINER".into(),
            haproxy_container.to_owned(),
        ),
        ("SWARM_LB_HTTP_PORT".into(), on_loopback(http)),
        ("SWARM_LB_HTTPS_PORT".into(), on_loopback(https)),
        ("SWARM_LB_METRICS_PORT".into(), on_loopback(metrics)),
        ("SWARM_LB_STATS_PORT".into(), on_loopback(stats)),
    ]
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Stack {
    /// `docker-compose up -d` of the repo's compose file on local images; waits until HAProxy
    /// answers on its admin socket with swarm-lb's config loaded.
    pub async fn up(extra_env: &[(&str, &str)]) -> Stack {
        Stack::up_named(&crate::unique("slbe2e").replace('-', ""), extra_env).await
    }

    /// [`Stack::up`] under a compose project name chosen by the caller (letters and digits),
    /// e.g. one a benchmark can recognise to clean up after a crashed run.
    pub async fn up_named(project: &str, extra_env: &[(&str, &str)]) -> Stack {
        Stack::up_full(project, extra_env, None, None).await
    }

    /// [`Stack::up`] with a compose override (YAML) laid over the repo's compose file.
    pub async fn up_with_override(extra_env: &[(&str, &str)], override_yaml: &str) -> Stack {
        let project = crate::unique("slbe2e").replace('-', "");
        Stack::up_full(&project, extra_env, Some(override_yaml), None).await
    }

    /// [`Stack::up_with_override`] with HAProxy's HTTP port published on loopback at
    /// `http_port` (one the caller picked with `free_port`, e.g. for an ACME CA that must
    /// know it before the stack starts).
    pub async fn up_on_http_port(
        extra_env: &[(&str, &str)],
        override_yaml: &str,
        http_port: u16,
    ) -> Stack {
        let project = crate::unique("slbe2e").replace('-', "");
        Stack::up_full(&project, extra_env, Some(override_yaml), Some(http_port)).await
    }

    async fn up_full(
        project: &str,
        extra_env: &[(&str, &str)],
        override_yaml: Option<&str>,
        http_port: Option<u16>,
    ) -> Stack {
        require_engine();
        let override_file = override_yaml.map(|yaml| {
            let path = std::env::temp_dir().join(format!("{project}-override.yml"));
            std::fs::write(&path, yaml).expect("write the compose override");
            path
        });
        let project = project.to_owned();
        let http_port = http_port.unwrap_or_else(free_port);
        let https_port = free_port();
        let (metrics_port, stats_port) = (free_port(), free_port());
        let haproxy_container = format!("{project}-haproxy");
        let mut env = isolated_env(
            &project,
            &haproxy_container,
            [http_port, https_port, metrics_port, stats_port],
        );
        env.extend([
            ("HAPROXY_IMAGE".into(), crate::docker::haproxy_image()),
            ("SWARM_LB_IMAGE".into(), crate::docker::swarm_lb_image()),
            ("RUST_LOG".into(), "info".into()),
        ]);
        for (k, v) in extra_env {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let stack = Stack {
            swarm_lb_container: format!("{project}_swarm-lb_1"),
            run_dir: volume_dir(&format!("{project}_run")),
            config_dir: volume_dir(&format!("{project}_config")),
            project,
            http_port,
            https_port,
            metrics_port,
            stats_port,
            haproxy_container,
            compose_file: repo_root().join("docker-compose.yml"),
            override_file,
            env,
        };
        stack.compose(&["up", "-d"]);
        let admin = stack.admin_socket();
        poll_until(Duration::from_secs(60), "haproxy's admin socket", || {
            let admin = admin.clone();
            async move { AdminClient::new(&admin).info().await.ok() }
        })
        .await;
        stack
    }

    fn compose_files(&self) -> Vec<std::ffi::OsString> {
        let mut files = vec!["-f".into(), self.compose_file.clone().into_os_string()];
        if let Some(o) = &self.override_file {
            files.push("-f".into());
            files.push(o.clone().into_os_string());
        }
        files
    }

    fn compose(&self, args: &[&str]) -> String {
        let out = Command::new("docker-compose")
            .args(self.compose_files())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DOCKER_HOST", "unix:///var/run/docker.sock")
            .output()
            .expect("docker-compose not found: install it with `apt-get install docker-compose` (scripts/setup.sh does)");
        assert!(
            out.status.success(),
            "docker-compose {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.run_dir.join("admin.sock")
    }
    pub fn master(&self) -> Master {
        Master::new(self.run_dir.join("master.sock"))
    }
    pub fn runtime(&self) -> AdminClient {
        AdminClient::new(self.admin_socket())
    }
    pub fn config_path(&self) -> PathBuf {
        self.config_dir.join("haproxy.cfg")
    }

    /// The reloads a routed service that appears or goes costs on this stack's HAProxy: none
    /// from 3.4 (swarm-lb creates and deletes backends through the Runtime API), one before.
    /// Read from `show info`'s version.
    pub async fn reloads_per_backend(&self) -> u32 {
        let admin = self.admin_socket();
        let info = poll_until(Duration::from_secs(10), "show info", || {
            let admin = admin.clone();
            async move { AdminClient::new(admin).info().await.ok() }
        })
        .await;
        u32::from((info.version.major, info.version.minor) < (3, 4))
    }

    /// The master's reload counter (`show proc`), retried across the master's re-exec.
    pub async fn reloads(&self) -> u32 {
        let master = self.master();
        poll_until(Duration::from_secs(10), "show proc", || {
            let m = &master;
            async move { m.show_proc().await.ok().map(|p| p.master.reloads) }
        })
        .await
    }

    /// `show servers state` rows of the backend serving the service `backend` (its newest
    /// generation, see `swarm_lb::plan`), in slot order.
    pub async fn servers(&self, backend: &str) -> Vec<ServerRow> {
        let mut rt = self.runtime();
        match rt
            .query(&[swarm_lb::haproxy::Query::ShowServersState { backend: None }])
            .await
        {
            Ok(mut replies) => match replies.pop() {
                Some(Ok(text)) => {
                    let all =
                        swarm_lb::haproxy::codec::parse_servers_state(&text).unwrap_or_default();
                    // A service's newest backend generation (`<service>:<n>` from 3.4).
                    let newest = all
                        .iter()
                        .filter(|r| r.backend.service() == backend)
                        .map(|r| r.backend.generation())
                        .max();
                    let mut rows: Vec<ServerRow> = all
                        .into_iter()
                        .filter(|r| {
                            r.backend.service() == backend && Some(r.backend.generation()) == newest
                        })
                        .collect();
                    // In slot order: HAProxy lists the servers of a backend created at
                    // runtime (3.4+) in another order.
                    rows.sort_by_key(|r| r.server.slot_index());
                    rows
                }
                _ => Vec::new(),
            },
            Err(_) => Vec::new(),
        }
    }

    /// Every backend HAProxy holds (`show backend`: also those without servers); empty when
    /// the admin socket does not answer.
    pub async fn backend_names(&self) -> Vec<String> {
        match self.runtime().backends().await {
            Ok(names) => names.into_iter().map(|n| n.as_str().to_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Addresses of the servers of `backend` that take traffic (ready, not maint/drain).
    pub async fn ready_addrs(&self, backend: &str) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .servers(backend)
            .await
            .into_iter()
            .filter(|r| codec::admin_from_bits(r.admin_state) == Admin::Ready)
            .map(|r| r.addr.to_string())
            .collect();
        addrs.sort();
        addrs
    }

    /// swarm-lb's log so far.
    pub fn swarm_lb_log(&self) -> String {
        let out = Command::new(crate::docker::bin())
            .args(["logs", &self.swarm_lb_container])
            .output()
            .expect("docker logs");
        // tracing writes to stdout; keep stderr too.
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    /// How many passes swarm-lb applied (one `plan applied` line each).
    pub fn applied_plans(&self) -> usize {
        self.swarm_lb_log().matches("plan applied").count()
    }

    pub fn restart_swarm_lb(&self) {
        docker(&["restart", "-t", "5", &self.swarm_lb_container]);
    }

    pub fn restart_haproxy(&self) {
        docker(&["restart", "-t", "5", &self.haproxy_container]);
    }

    pub fn stop_swarm_lb(&self) {
        docker(&["stop", "-t", "5", &self.swarm_lb_container]);
    }
    pub fn start_swarm_lb(&self) {
        docker(&["start", &self.swarm_lb_container]);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- swarm-lb log ({}):\n{}",
                self.swarm_lb_container,
                self.swarm_lb_log()
            );
        }
        let _ = Command::new("docker-compose")
            .args(self.compose_files())
            .args(["down", "-v", "-t", "5"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
        if let Some(o) = &self.override_file {
            let _ = std::fs::remove_file(o);
        }
    }
}

/// `docker-compose down -v` of a project left behind by a run that could not clean up (killed):
/// its containers are found by the project's label, so no variable of the original run is
/// needed. Errors are returned, not raised: this is best-effort housekeeping.
pub fn down_project(project: &str) -> Result<(), String> {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(repo_root().join("docker-compose.yml"))
        .args(["-p", project, "down", "-v", "-t", "5"])
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .output()
        .map_err(|e| format!("docker-compose: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Where a named volume lives on the host (the engine's default local driver layout).
fn volume_dir(volume: &str) -> PathBuf {
    let root = try_docker(&["info", "--format", "{{.DockerRootDir}}"])
        .unwrap_or_else(|_| "/var/lib/docker".to_owned());
    Path::new(&root).join("volumes").join(volume).join("_data")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables of the compose file that name something the engine holds once: the
    /// `container_name` and the published `ports` (volumes are named by the project).
    fn compose_shared_names(compose: &str) -> Vec<String> {
        let mut vars = Vec::new();
        let mut in_ports = false;
        for line in compose.lines() {
            let t = line.trim();
            if t.starts_with('#') {
                continue;
            }
            let key = t.split(':').next().unwrap_or("");
            if !t.starts_with('-') && t.ends_with(':') {
                in_ports = key == "ports";
                continue;
            }
            if !t.starts_with('-') {
                in_ports = false;
            }
            if key == "container_name" || (in_ports && t.starts_with('-')) {
                let mut rest = t;
                while let Some(at) = rest.find("${") {
                    rest = &rest[at + 2..];
                    let end = rest.find([':', '}']).unwrap_or(rest.len());
                    vars.push(rest[..end].to_owned());
                }
            }
        }
        vars
    }

    fn compose() -> String {
        std::fs::read_to_string(repo_root().join("docker-compose.yml")).expect("compose file")
    }

    #[test]
    fn the_compose_files_container_name_and_every_published_port_are_variables() {
        assert_eq!(
            compose_shared_names(&compose()),
            [
                "SWARM_LB_HAPROXY_CONTAINER",
                "SWARM_LB_HTTP_PORT",
                "SWARM_LB_HTTPS_PORT",
                "SWARM_LB_STATS_PORT",
                "SWARM_LB_METRICS_PORT",
            ]
        );
    }

    #[test]
    fn a_test_stack_and_the_soak_set_every_name_a_product_stack_also_holds() {
        let env = isolated_env("p", "p-haproxy", [1, 2, 3, 4]);
        let soak = std::fs::read_to_string(repo_root().join("scripts/soak.py")).expect("soak");
        for var in compose_shared_names(&compose()) {
            assert!(
                env.iter().any(|(k, _)| *k == var),
                "the e2e stack leaves {var} at the compose default"
            );
            assert!(
                soak.contains(&format!("{var}=")),
                "scripts/soak.py leaves {var} at the compose default"
            );
        }
    }
}
