//! The HAProxy container of this node: adopted when it exists, created when asked to.
//!
//! On several edge nodes swarm-lb runs as a global Swarm service, but HAProxy must stay a PLAIN
//! container (Docker refuses, or gets wrong, attaching a Swarm task's container to overlay
//! networks live). So each swarm-lb can create the stock HAProxy container on its own node
//! through the local engine, sharing the node-local named volumes that hold the sockets and the
//! config. It never stops, restarts, recreates or removes it: an existing container of that name
//! is adopted as it is (started if it is stopped), so a swarm-lb restart or upgrade leaves HAProxy
//! and its connections alone. The spec and its checks are pure; [`super::Docker::ensure_proxy`]
//! is the effect.

use std::net::IpAddr;

/// A published port of the HAProxy container: `[ip:]host:container` (TCP), as `docker run -p`
/// writes it. The host port is on the node's own addresses (no routing mesh), so each edge
/// answers on its own address and sees client addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Host address to bind; `None`: every address of the node.
    pub host_ip: Option<IpAddr>,
    /// Port on the node, 1..=65535.
    pub host_port: u16,
    /// Port inside the container, 1..=65535.
    pub container_port: u16,
}

/// Why a `--haproxy-publish` value or a container spec is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxySpecError {
    /// Not `[ip:]host:container`.
    #[error("publish {value:?}: {reason} (expected [ip:]host_port:container_port, e.g. 80:80)")]
    Publish { value: String, reason: &'static str },
    /// A name (container, image, volume) that is empty or holds characters Docker refuses.
    #[error("{what} {value:?}: {reason}")]
    Name {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A mount target that is not absolute.
    #[error("mount target {value:?} must be an absolute path")]
    Target { value: String },
}

impl Publish {
    /// Parses `[ip:]host:container`; an IPv6 host address goes in brackets (`[::1]:80:80`).
    ///
    /// Errors: [`ProxySpecError::Publish`] naming the value and what is wrong.
    pub fn parse(value: &str) -> Result<Publish, ProxySpecError> {
        let bad = |reason| ProxySpecError::Publish {
            value: value.to_string(),
            reason,
        };
        let port = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad("ports are numbers 1..=65535")),
            Ok(n) => Ok(n),
        };
        let (ip, rest) = match value.strip_prefix('[') {
            Some(v6) => {
                let (ip, rest) = v6.split_once("]:").ok_or_else(|| bad("unclosed '['"))?;
                (Some(ip), rest)
            }
            None => match value.matches(':').count() {
                0 => return Err(bad("host and container ports are both needed")),
                1 => (None, value),
                2 => {
                    let (ip, rest) = value.split_once(':').ok_or_else(|| bad("no port"))?;
                    (Some(ip), rest)
                }
                _ => return Err(bad("too many ':' (an IPv6 address goes in brackets)")),
            },
        };
        let host_ip = match ip {
            None => None,
            Some(ip) => Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| bad("the host address is not an IP address"))?,
            ),
        };
        let (host, container) = rest
            .split_once(':')
            .ok_or_else(|| bad("host and container ports are both needed"))?;
        Ok(Publish {
            host_ip,
            host_port: port(host)?,
            container_port: port(container)?,
        })
    }
}

/// What the HAProxy container is created with when it does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    /// Container name (swarm-lb's `--haproxy-container`).
    pub name: String,
    /// Image, e.g. `haproxy:3.4`.
    pub image: String,
    /// The command: HAProxy in master-worker mode on the generated config, its master socket
    /// in the run volume.
    pub cmd: Vec<String>,
    /// Named volume holding the admin and master sockets, and where it is mounted (the same path
    /// in both containers: swarm-lb writes these paths into haproxy.cfg).
    pub run_volume: (String, String),
    /// Named volume holding haproxy.cfg and hosts.map, and where it is mounted.
    pub config_volume: (String, String),
    /// Published ports, on the node's own addresses.
    pub publish: Vec<Publish>,
    /// `KEY=value` environment entries.
    pub env: Vec<String>,
}

impl ProxySpec {
    /// The spec of the stock HAProxy beside this swarm-lb: `haproxy -W -db -S <master>,mode,600
    /// -f <config_dir>/haproxy.cfg`, run as root (a fresh named volume is root's), volumes at
    /// the same paths swarm-lb sees them (`run_dir`: the admin and master sockets' directory).
    ///
    /// Errors: an empty or malformed name, image or volume; a relative mount path.
    pub fn stock(
        name: &str,
        image: &str,
        run: (&str, &str),
        config: (&str, &str),
        master_socket: &str,
        publish: Vec<Publish>,
    ) -> Result<ProxySpec, ProxySpecError> {
        check_name("container name", name)?;
        check_image(image)?;
        for (volume, target) in [run, config] {
            check_name("volume", volume)?;
            if !target.starts_with('/') {
                return Err(ProxySpecError::Target {
                    value: target.to_string(),
                });
            }
        }
        let config_file = format!("{}/haproxy.cfg", config.1.trim_end_matches('/'));
        Ok(ProxySpec {
            name: name.to_string(),
            image: image.to_string(),
            cmd: [
                "haproxy",
                "-W",
                "-db",
                "-S",
                &format!("{master_socket},mode,600"),
                "-f",
                &config_file,
            ]
            .map(str::to_string)
            .to_vec(),
            run_volume: (run.0.to_string(), run.1.to_string()),
            config_volume: (config.0.to_string(), config.1.to_string()),
            publish,
            env: vec!["SWARM_LB_STATS_BIND=:8405".to_string()],
        })
    }
}

/// What [`super::Docker::ensure_proxy`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyOutcome {
    /// The container existed and was running: left exactly as it was.
    Adopted,
    /// The container existed but was stopped: started, not recreated.
    Started,
    /// No container of that name: created from the spec and started.
    Created,
    /// The container was stopped and could not start because a network it was attached to is
    /// not on this node (after the node's engine restarted): replaced by a new one from the
    /// spec, on the same volumes.
    Recreated,
}

/// The network named by Docker's `network <id> not found` (the reply to starting a container
/// attached to an overlay the node does not hold), if `message` is that.
pub fn lost_network(message: &str) -> Option<&str> {
    let id = message
        .trim()
        .strip_prefix("network ")?
        .strip_suffix(" not found")?;
    (!id.is_empty() && !id.contains(char::is_whitespace)).then_some(id)
}

/// Docker's rule for container and volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn check_name(what: &'static str, value: &str) -> Result<(), ProxySpecError> {
    let bad = |reason| ProxySpecError::Name {
        what,
        value: value.to_string(),
        reason,
    };
    let mut chars = value.chars();
    match chars.next() {
        None => return Err(bad("empty")),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(bad("must start with a letter or digit"))
        }
        Some(_) => {}
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Ok(())
    } else {
        Err(bad("only letters, digits, '_', '.', '-'"))
    }
}

/// An image reference: non-empty, no whitespace or control characters.
fn check_image(value: &str) -> Result<(), ProxySpecError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ProxySpecError::Name {
            what: "image",
            value: value.to_string(),
            reason: "empty or holds whitespace",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_refused_for_a_missing_network_names_that_network() {
        // As Docker 20.10 answered on a node whose engine restarted (404).
        assert_eq!(
            lost_network("network tf7pulsgpv0sljthduukswvz2 not found"),
            Some("tf7pulsgpv0sljthduukswvz2")
        );
        for other in [
            "No such container: x",
            "network  not found",
            "network a b not found",
            "driver failed programming external connectivity: port is already allocated",
        ] {
            assert_eq!(lost_network(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_publish_value_is_host_and_container_port_with_an_optional_address() {
        assert_eq!(
            Publish::parse("80:8080"),
            Ok(Publish {
                host_ip: None,
                host_port: 80,
                container_port: 8080
            })
        );
        let p = Publish::parse("10.0.0.5:443:443").expect("ipv4");
        assert_eq!(p.host_ip, Some("10.0.0.5".parse().unwrap()));
        let p = Publish::parse("[::1]:80:80").expect("ipv6");
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        assert_eq!((p.host_port, p.container_port), (80, 80));
    }

    #[test]
    fn a_bad_publish_value_is_an_error_naming_it() {
        for bad in [
            "",
            "80",
            "0:80",
            "80:0",
            "70000:80",
            "a:80",
            "1.2.3:80:80",
            "::1:80:80",
            "[::1:80:80",
            "80:80:80:80",
            "x.y:80:80",
        ] {
            match Publish::parse(bad) {
                Err(ProxySpecError::Publish { value, .. }) => assert_eq!(value, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let e = Publish::parse("80").expect_err("one port");
        assert!(e.to_string().contains("both needed"), "{e}");
    }

    #[test]
    fn the_stock_spec_runs_master_worker_on_the_shared_volumes_at_the_same_paths() {
        let s = ProxySpec::stock(
            "swarm-lb-haproxy",
            "haproxy:3.4",
            ("swarm-lb-run", "/var/run/haproxy"),
            ("swarm-lb-config", "/usr/local/etc/haproxy/"),
            "/var/run/haproxy/master.sock",
            vec![Publish::parse("80:80").unwrap()],
        )
        .expect("valid");
        assert_eq!(
            s.cmd.join(" "),
            "haproxy -W -db -S /var/run/haproxy/master.sock,mode,600 -f /usr/local/etc/haproxy/haproxy.cfg"
        );
        assert_eq!(s.run_volume.1, "/var/run/haproxy");
        assert_eq!(s.publish.len(), 1);
    }

    #[test]
    fn a_bad_name_image_volume_or_relative_target_is_refused() {
        let p = "/var/run/haproxy/master.sock";
        let ok = ("v", "/x");
        let cases = [
            ProxySpec::stock("", "i", ok, ok, p, vec![]),
            ProxySpec::stock("-x", "i", ok, ok, p, vec![]),
            ProxySpec::stock("a b", "i", ok, ok, p, vec![]),
            ProxySpec::stock("n", "", ok, ok, p, vec![]),
            ProxySpec::stock("n", "hap roxy", ok, ok, p, vec![]),
            ProxySpec::stock("n", "i", ("a/b", "/x"), ok, p, vec![]),
            ProxySpec::stock("n", "i", ok, ("v", "relative"), p, vec![]),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            assert!(c.is_err(), "case {i} accepted: {c:?}");
        }
        assert!(matches!(
            ProxySpec::stock("n", "i", ok, ("v", "rel"), p, vec![]),
            Err(ProxySpecError::Target { .. })
        ));
    }
}
