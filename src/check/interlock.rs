//! What an Interlock operator brings along: Interlock's service labels, each with what swarm-lb
//! does differently with it ([`INTERLOCK_LABELS`]), and the options of Interlock's own
//! configuration (`config.toml` of `ucp-interlock`), each with the swarm-lb flag that takes its
//! place ([`INTERLOCK_OPTIONS`]).
//!
//! The labels are Docker Enterprise's Interlock reference ("Use service labels", UCP 3.x and
//! MKE 3.x) plus `ip_hash` from its persistent sessions page. Whether swarm-lb reads a label at
//! all is not written here: it is `model::labels::keys::known`, the table the daemon reads by,
//! and a test holds the two together.

/// How swarm-lb takes an Interlock label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Read as Interlock read it: nothing to say.
    Same,
    /// Read, with a difference an operator should know before the switch.
    Differs(&'static str),
}

/// One of Interlock's service labels.
#[derive(Debug, Clone, Copy)]
pub struct InterlockLabel {
    pub key: &'static str,
    pub reading: Reading,
    /// The values the difference is about; `None`: every value.
    pub values: Option<fn(&str) -> bool>,
}

impl InterlockLabel {
    /// What swarm-lb does differently with `value`, if anything.
    pub fn differs(&self, value: &str) -> Option<&'static str> {
        let Reading::Differs(how) = self.reading else {
            return None;
        };
        match self.values {
            Some(about) if !about(value) => None,
            _ => Some(how),
        }
    }
}

const fn label(key: &'static str, reading: Reading) -> InterlockLabel {
    InterlockLabel {
        key,
        reading,
        values: None,
    }
}

const fn label_when(
    key: &'static str,
    values: fn(&str) -> bool,
    how: &'static str,
) -> InterlockLabel {
    InterlockLabel {
        key,
        reading: Differs(how),
        values: Some(values),
    }
}

use Reading::{Differs, Same};

/// Every label Interlock documented, in its reference's order.
pub const INTERLOCK_LABELS: &[InterlockLabel] = &[
    label_when(
        "com.docker.lb.hosts",
        |v| v.contains('*'),
        "*.example.com routes hosts of exactly one label more (a.example.com, not \
         a.b.example.com), as a wildcard certificate covers them",
    ),
    label("com.docker.lb.port", Same),
    label(
        "com.docker.lb.network",
        Differs(
            "HAProxy's container is attached to it only with --haproxy-container; the network \
             must be an attachable overlay, not ingress",
        ),
    ),
    label(
        "com.docker.lb.context_root",
        Differs(
            "matched on path segments (/app, /app/x, not /apple); several services may share \
             a host with different roots",
        ),
    ),
    label("com.docker.lb.context_root_rewrite", Same),
    label("com.docker.lb.ssl_only", Same),
    label(
        "com.docker.lb.ssl_cert",
        Differs(
            "the secret is read from --secrets-dir (copied there with \
             --secrets-delivery=job); the pair is checked first (key, validity, names \
             covering every host) and left out with an error when it fails",
        ),
    ),
    label(
        "com.docker.lb.ssl_key",
        Differs("read with ssl_cert, from --secrets-dir, and checked against it"),
    ),
    label(
        "com.docker.lb.websocket_endpoints",
        Differs(
            "only checked: HAProxy passes a websocket upgrade on every route, so nothing \
             is configured per path",
        ),
    ),
    label(
        "com.docker.lb.service_cluster",
        Differs(
            "the cluster a swarm-lb serves is its --service-cluster flag (Interlock's \
             ServiceCluster option); without it, only services without this label",
        ),
    ),
    label("com.docker.lb.ssl_backend", Same),
    label(
        "com.docker.lb.ssl_backend_tls_verify",
        Differs(
            "required (the default) verifies the tasks against --backend-ca-file; \
             without a usable bundle verification fails closed",
        ),
    ),
    label(
        "com.docker.lb.sticky_session_cookie",
        Differs(
            "HAProxy sets the cookie itself (insert indirect nocache), a hash of the task's \
             address; a cookie of that name the application sets is removed from its \
             responses; task mode only",
        ),
    ),
    label(
        "com.docker.lb.redirects",
        Differs(
            "only http:// sources; a source another service routes, a second redirect of \
             one source or a loop is left out with an error",
        ),
    ),
    label("com.docker.lb.ssl_passthrough", Same),
    label_when(
        "com.docker.lb.backend_mode",
        |v| v == "vip",
        "in vip mode the per-task labels (sticky_session_cookie, ip_hash, max_fails, \
         health checks) are ignored with a warning",
    ),
    label(
        "com.docker.lb.ip_hash",
        Differs("HAProxy's balance source (consistent hashing); task mode only"),
    ),
];

/// The row of an Interlock label.
pub fn interlock_label(key: &str) -> Option<&'static InterlockLabel> {
    INTERLOCK_LABELS.iter().find(|l| l.key == key)
}

/// One option of Interlock's configuration and where it goes with swarm-lb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct InterlockOption {
    /// The option as Interlock's `config.toml` spells it (`Extensions.<name>.` left out).
    pub option: &'static str,
    /// The swarm-lb flag (with its environment variable) that takes its place, or `None`.
    pub flag: Option<&'static str>,
    pub note: &'static str,
}

const fn option(
    option: &'static str,
    flag: Option<&'static str>,
    note: &'static str,
) -> InterlockOption {
    InterlockOption { option, flag, note }
}

/// Interlock's configuration options (the core, then an extension's), each with its swarm-lb
/// flag.
pub const INTERLOCK_OPTIONS: &[InterlockOption] = &[
    option(
        "DockerURL",
        Some("--docker / DOCKER_HOST, --manager / SWARM_LB_MANAGER"),
        "a unix socket or tcp:// endpoint; on a worker edge, a manager's through `swarm-lb api-proxy`",
    ),
    option(
        "TLSCACert, TLSCert, TLSKey, AllowInsecure",
        None,
        "no TLS client to Docker: use the local socket, or `swarm-lb api-proxy` on an internal overlay",
    ),
    option(
        "PollInterval",
        Some("--resync / SWARM_LB_RESYNC"),
        "swarm-lb follows Docker's events; the resync (30 s) only backs them up",
    ),
    option(
        "ListenAddr",
        Some("--listen / SWARM_LB_LISTEN"),
        "metrics, health and status over HTTP; there is no extension API",
    ),
    option(
        "EndpointOverride",
        None,
        "no extension API to point at; several edges follow each other's `swarm-lb agent` \
         with --hints",
    ),
    option(
        "Image, Args (the extension)",
        None,
        "no extension service: one swarm-lb per edge drives its HAProxy",
    ),
    option(
        "ProxyImage",
        Some("--haproxy-image / SWARM_LB_HAPROXY_IMAGE"),
        "with --haproxy-create; a stock HAProxy image",
    ),
    option(
        "ProxyServiceName",
        Some("--haproxy-container / SWARM_LB_HAPROXY_CONTAINER"),
        "a plain container on each edge node, not a Swarm service",
    ),
    option(
        "ProxyReplicas, ProxyServiceMode, Constraints, ProxyConstraints",
        None,
        "deploy swarm-lb as a global service on the edge nodes (docker-stack.yml)",
    ),
    option(
        "ProxyConfigPath",
        Some("--config-dir / SWARM_LB_CONFIG_DIR"),
        "haproxy.cfg and hosts.map",
    ),
    option(
        "PublishedPort, TargetPort",
        Some("--haproxy-publish / SWARM_LB_HAPROXY_PUBLISH, --bind / SWARM_LB_BIND"),
        "published on the node's own addresses, not the routing mesh",
    ),
    option(
        "PublishedSSLPort, TargetSSLPort",
        Some("--haproxy-publish, --https-bind / SWARM_LB_HTTPS_BIND"),
        "",
    ),
    option(
        "ServiceCluster",
        Some("--service-cluster / SWARM_LB_SERVICE_CLUSTER"),
        "one swarm-lb per service cluster",
    ),
    option(
        "Config.SSLCiphers, Config.SSLProtocols",
        Some("--tls-profile / SWARM_LB_TLS_PROFILE"),
        "modern, intermediate or old (Mozilla's guidelines)",
    ),
    option(
        "Config (timeouts, connection limits, other proxy tuning)",
        Some("--template / SWARM_LB_TEMPLATE"),
        "a copy of haproxy/base.cfg with the values changed",
    ),
    option(
        "HitlessServiceUpdate",
        None,
        "not needed: routine changes are Runtime API commands, not reloads",
    ),
];

/// Whether a service is one of Interlock's own (`ucp-interlock`, `ucp-interlock-extension`,
/// `ucp-interlock-proxy` and a service cluster's `ucp-interlock-proxy-<cluster>`, or the
/// same names without `ucp-` where Interlock was deployed by hand): swarm-lb replaces it.
pub fn is_interlock_service(name: &str) -> bool {
    let name = name.strip_prefix("ucp-").unwrap_or(name);
    name == "interlock"
        || name.starts_with("interlock-extension")
        || name.starts_with("interlock-proxy")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::keys::{known, PREFIX};

    #[test]
    fn every_interlock_label_is_one_swarm_lb_reads_from_its_one_table() {
        // swarm-lb reads every label of Interlock's reference; a label it stopped reading (or
        // an Interlock label it never read) would need its row to say so.
        for l in INTERLOCK_LABELS {
            assert!(l.key.starts_with(PREFIX), "{}", l.key);
            assert!(known(l.key).is_some(), "{} is not in LABELS", l.key);
        }
        let mut keys: Vec<&str> = INTERLOCK_LABELS.iter().map(|l| l.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), INTERLOCK_LABELS.len(), "a key has two rows");
    }

    #[test]
    fn a_difference_about_some_values_is_named_only_for_them() {
        let hosts = interlock_label("com.docker.lb.hosts").expect("a row");
        assert_eq!(hosts.differs("a.example,b.example"), None);
        assert!(hosts.differs("*.example").is_some());
        let mode = interlock_label("com.docker.lb.backend_mode").expect("a row");
        assert_eq!(mode.differs("task"), None);
        assert!(mode.differs("vip").is_some());
        let port = interlock_label("com.docker.lb.port").expect("a row");
        assert_eq!(port.differs("80"), None);
    }

    #[test]
    fn the_migration_chapter_has_a_row_for_each_interlock_option() {
        let doc = include_str!("../../docs/migrating-from-interlock.md");
        for o in INTERLOCK_OPTIONS {
            let flag = o.flag.map_or("none".to_owned(), |f| format!("`{f}`"));
            let row = format!("| {} | {flag} |", o.option);
            assert!(
                doc.contains(&row),
                "docs/migrating-from-interlock.md lacks {row}"
            );
        }
    }

    #[test]
    fn interlocks_own_services_are_told_from_applications_by_name() {
        for own in [
            "ucp-interlock",
            "ucp-interlock-extension",
            "ucp-interlock-proxy",
            "ucp-interlock-proxy-east",
            "interlock",
            "interlock-proxy",
        ] {
            assert!(is_interlock_service(own), "{own}");
        }
        for app in ["web", "interlocked", "my-interlock", "ucp-agent"] {
            assert!(!is_interlock_service(app), "{app}");
        }
    }
}
