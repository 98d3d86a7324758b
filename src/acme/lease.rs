//! The order lease (`docs/acme.md`, "Who orders"): one edge orders a given name set at a time,
//! across the cluster, with nothing but Swarm. Pure: names, labels and decisions; the Docker
//! calls are `swarm::acme`'s, made by `super::worker`.
//!
//! A lease is a Docker config named [`lease_name`] (a digest of the sorted names, so every
//! edge computes the same one), whose labels say who holds it and until when. Swarm refuses a
//! second create of the same name (409 Conflict), so exactly one of the edges that start
//! together gets it. The holder extends it, and an edge takes over an expired one, by
//! updating its labels with the version it read (`POST /configs/{id}/update?version=N`: only
//! labels may change, and a stale version is refused), so two edges that both see it expire
//! cannot both take it. Times are unix seconds.

use std::collections::BTreeMap;

use crate::model::Host;

/// Prefix of every lease's config name.
pub const LEASE_PREFIX: &str = "swarm-lb.acme.lock.";
/// Label: who holds the lease (`<node id>/<task or container id>`).
pub const HOLDER: &str = "com.docker.lb.acme.holder";
/// Label: when the lease expires, unix seconds.
pub const EXPIRES: &str = "com.docker.lb.acme.expires";
/// Label: the names the lease is for, comma-separated (for people reading `docker config ls`).
pub const HOSTS: &str = "com.docker.lb.acme.hosts";
/// How long a lease lasts, in seconds: an order takes seconds; a holder that dies leaves the
/// names unordered this long at most.
pub const LEASE_S: i64 = 120;
/// How often the holder extends its lease, in seconds (a quarter of [`LEASE_S`]: three
/// missed extensions before it lapses).
pub const EXTEND_EVERY_S: i64 = 30;

/// The config name of the lease for `hosts` (order and duplicates do not matter):
/// [`LEASE_PREFIX`] + the first 128 bits of SHA-256 over the sorted names joined by `,`, in
/// hex. 51 characters, inside Docker's 64 and its `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn lease_name(hosts: &[Host]) -> String {
    let mut names: Vec<&str> = hosts.iter().map(Host::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let digest = ring::digest::digest(&ring::digest::SHA256, names.join(",").as_bytes());
    let mut name = String::with_capacity(LEASE_PREFIX.len() + 32);
    name.push_str(LEASE_PREFIX);
    for byte in &digest.as_ref()[..16] {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// What a lease's labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires: i64,
}

/// A lease config whose labels cannot be read: treated as expired by [`decide`] after
/// [`LEASE_S`] from its creation, never as held forever.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("lease label {label} is missing")]
    Missing { label: &'static str },
    #[error("lease label {label} is not {expected}")]
    Bad {
        label: &'static str,
        expected: &'static str,
    },
}

impl Lease {
    /// A lease for `holder` from `now`.
    pub fn new(holder: &str, now: i64) -> Self {
        Self {
            holder: holder.to_owned(),
            expires: now.saturating_add(LEASE_S),
        }
    }

    /// The labels of the config (with the names, for people).
    pub fn labels(&self, hosts: &[Host]) -> BTreeMap<String, String> {
        let mut names: Vec<&str> = hosts.iter().map(Host::as_str).collect();
        names.sort_unstable();
        names.dedup();
        BTreeMap::from([
            (HOLDER.to_owned(), self.holder.clone()),
            (EXPIRES.to_owned(), self.expires.to_string()),
            (HOSTS.to_owned(), names.join(",")),
        ])
    }

    /// Reads the labels of a lease config.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self, LeaseError> {
        let holder = labels
            .get(HOLDER)
            .filter(|h| !h.is_empty())
            .ok_or(LeaseError::Missing { label: HOLDER })?;
        let expires = labels
            .get(EXPIRES)
            .ok_or(LeaseError::Missing { label: EXPIRES })?
            .parse()
            .map_err(|_| LeaseError::Bad {
                label: EXPIRES,
                expected: "unix seconds",
            })?;
        Ok(Self {
            holder: holder.clone(),
            expires,
        })
    }
}

/// What an edge does about a name set's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No lease: create it (Swarm lets exactly one creator win).
    Create,
    /// Ours and still running: order, and extend it every [`EXTEND_EVERY_S`].
    Ours,
    /// Another edge holds it until `until`: wait (and watch for the certificate it stores).
    Wait { holder: String, until: i64 },
    /// Expired (its holder died, or its labels are unreadable): take it over by a versioned
    /// label update.
    TakeOver,
}

/// The decision of edge `me` at `now`, given the lease config found (`None`: none exists),
/// with its labels read, or the reason they could not be and the config's creation time.
pub fn decide(found: Option<(Result<Lease, LeaseError>, i64)>, me: &str, now: i64) -> Decision {
    match found {
        None => Decision::Create,
        Some((Ok(lease), _)) if lease.expires <= now => Decision::TakeOver,
        Some((Ok(lease), _)) if lease.holder == me => Decision::Ours,
        Some((Ok(lease), _)) => Decision::Wait {
            holder: lease.holder,
            until: lease.expires,
        },
        Some((Err(_), created)) if created.saturating_add(LEASE_S) <= now => Decision::TakeOver,
        Some((Err(_), created)) => Decision::Wait {
            holder: "<unreadable lease>".to_owned(),
            until: created.saturating_add(LEASE_S),
        },
    }
}

/// The labels that extend the lease whose labels are `labels` to `now` + [`LEASE_S`], if
/// edge `me` still holds it (every other label kept: the names, the failure count); else the
/// holder it names (`<unreadable lease>` when its labels cannot be read). The holder extends
/// every [`EXTEND_EVERY_S`] while it orders, so an order may take longer than one lease and
/// no other edge takes over from a holder still at work.
pub fn extended(
    labels: &BTreeMap<String, String>,
    me: &str,
    now: i64,
) -> Result<BTreeMap<String, String>, String> {
    match Lease::from_labels(labels) {
        Ok(lease) if lease.holder == me => {
            let mut labels = labels.clone();
            labels.insert(EXPIRES.to_owned(), now.saturating_add(LEASE_S).to_string());
            Ok(labels)
        }
        Ok(lease) => Err(lease.holder),
        Err(_) => Err("<unreadable lease>".to_owned()),
    }
}

/// The wait after failed orders that a lease held by `me` still carries at `now`: the count
/// of failures (the `failures` label, see `store::FAILURES`) and when the next attempt is due
/// (the lease's expiry, which the holder set to it). `None` when the lease is another edge's,
/// carries no failure, or has run out. An edge restarted under the same holder name (compose
/// keeps a container's id across restarts) or whose label went and came back reads its own
/// wait from Swarm, not from its memory.
pub fn backoff_held(labels: &BTreeMap<String, String>, me: &str, now: i64) -> Option<(u32, i64)> {
    let lease = Lease::from_labels(labels).ok()?;
    let failures: u32 = labels.get(super::store::FAILURES)?.parse().ok()?;
    (lease.holder == me && failures > 0 && lease.expires > now).then_some((failures, lease.expires))
}

/// What a refused lease create says about this edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRefused {
    /// 409: another edge created the lease first. Wait for the certificate it stores.
    Taken,
    /// 403: this edge may not create configs. A worker edge reads Swarm through the stack's
    /// api-proxy, which refuses every create but a copy job's (`docs/acme.md`, "Several
    /// nodes"). Such an edge never orders, for any name: the edges with a manager's socket do.
    /// It keeps answering challenges and serving the certificates they store.
    NotAllowed,
    /// Anything else (engine restarting, connection lost): the next round tries again.
    Retry,
}

/// How an edge reads the HTTP status of its refused lease create (`None`: no answer at all).
/// Only 403 ends ordering: it is a standing permission (the proxy's rule, an authorization
/// plugin's), where a 409 is one lost race and a 5xx or a lost connection are passing.
pub fn create_refused(status: Option<u16>) -> CreateRefused {
    match status {
        Some(409) => CreateRefused::Taken,
        Some(403) => CreateRefused::NotAllowed,
        _ => CreateRefused::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease_labels(holder: &str, expires: i64, failures: Option<u32>) -> BTreeMap<String, String> {
        let mut labels = Lease {
            holder: holder.into(),
            expires,
        }
        .labels(&hosts(&["a.example"]));
        if let Some(n) = failures {
            labels.insert(super::super::store::FAILURES.into(), n.to_string());
        }
        labels
    }

    #[test]
    fn the_holder_extends_its_lease_keeping_every_other_label_and_nobody_else_can() {
        let labels = lease_labels("n1/c1", 1_120, Some(2));
        let longer = extended(&labels, "n1/c1", 1_100).unwrap();
        assert_eq!(longer[EXPIRES], (1_100 + LEASE_S).to_string());
        assert_eq!(longer[HOLDER], "n1/c1");
        assert_eq!(longer[HOSTS], "a.example");
        assert_eq!(longer[super::super::store::FAILURES], "2");
        assert_eq!(extended(&labels, "n2/c9", 1_100), Err("n1/c1".to_owned()));
        let mut unreadable = labels.clone();
        unreadable.remove(HOLDER);
        assert_eq!(
            extended(&unreadable, "n1/c1", 1_100),
            Err("<unreadable lease>".to_owned())
        );
    }

    #[test]
    fn a_wait_after_failed_orders_is_read_back_from_the_lease_by_its_holder_only_while_it_runs() {
        let held = lease_labels("n1/c1", 2_000, Some(3));
        assert_eq!(backoff_held(&held, "n1/c1", 1_000), Some((3, 2_000)));
        assert_eq!(backoff_held(&held, "n1/c1", 2_000), None, "run out");
        assert_eq!(backoff_held(&held, "n2/c9", 1_000), None, "another edge's");
        let ordering = lease_labels("n1/c1", 2_000, None);
        assert_eq!(backoff_held(&ordering, "n1/c1", 1_000), None, "no failure");
        let zero = lease_labels("n1/c1", 2_000, Some(0));
        assert_eq!(backoff_held(&zero, "n1/c1", 1_000), None);
    }

    fn hosts(list: &[&str]) -> Vec<Host> {
        list.iter().map(|h| Host::parse(h).unwrap()).collect()
    }

    #[test]
    fn every_edge_names_the_same_lease_whatever_the_order_of_the_hosts() {
        let a = lease_name(&hosts(&["b.example", "a.example"]));
        let b = lease_name(&hosts(&["a.example", "b.example", "a.example"]));
        assert_eq!(a, b);
        assert_ne!(a, lease_name(&hosts(&["a.example"])));
        assert_eq!(a.len(), LEASE_PREFIX.len() + 32);
        assert!(a.len() <= 64);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
        // Fixed for all time: edges of different versions must agree.
        assert_eq!(
            lease_name(&hosts(&["a.example"])),
            format!("{LEASE_PREFIX}{}", &sha256_hex("a.example")[..32])
        );
    }

    fn sha256_hex(text: &str) -> String {
        ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn a_lease_round_trips_through_its_labels() {
        let lease = Lease::new("node-1/task-9", 1_000);
        assert_eq!(lease.expires, 1_000 + LEASE_S);
        let labels = lease.labels(&hosts(&["b.example", "a.example"]));
        assert_eq!(labels[HOSTS], "a.example,b.example");
        assert_eq!(Lease::from_labels(&labels), Ok(lease));
        let mut bad = labels.clone();
        bad.insert(EXPIRES.into(), "soon".into());
        assert!(matches!(
            Lease::from_labels(&bad),
            Err(LeaseError::Bad { .. })
        ));
        bad.remove(HOLDER);
        assert_eq!(
            Lease::from_labels(&bad),
            Err(LeaseError::Missing { label: HOLDER })
        );
    }

    #[test]
    fn an_edge_creates_waits_keeps_or_takes_over_by_the_lease_it_finds() {
        let held = |holder: &str, expires| {
            Some((
                Ok(Lease {
                    holder: holder.into(),
                    expires,
                }),
                0,
            ))
        };
        assert_eq!(decide(None, "me", 100), Decision::Create);
        assert_eq!(decide(held("me", 200), "me", 100), Decision::Ours);
        assert_eq!(
            decide(held("other", 200), "me", 100),
            Decision::Wait {
                holder: "other".into(),
                until: 200
            }
        );
        assert_eq!(decide(held("other", 100), "me", 100), Decision::TakeOver);
        // Our own lease that lapsed is taken over like anyone's: another edge may have.
        assert_eq!(decide(held("me", 50), "me", 100), Decision::TakeOver);
        let unreadable = |created| Some((Err(LeaseError::Missing { label: HOLDER }), created));
        assert!(matches!(
            decide(unreadable(50), "me", 100),
            Decision::Wait { until, .. } if until == 50 + LEASE_S
        ));
        assert_eq!(decide(unreadable(0), "me", LEASE_S), Decision::TakeOver);
    }

    #[test]
    fn only_a_forbidden_lease_create_stops_an_edge_from_ordering() {
        assert_eq!(create_refused(Some(409)), CreateRefused::Taken);
        assert_eq!(create_refused(Some(403)), CreateRefused::NotAllowed);
        for passing in [None, Some(500), Some(502), Some(503), Some(400), Some(404)] {
            assert_eq!(create_refused(passing), CreateRefused::Retry, "{passing:?}");
        }
    }
}
