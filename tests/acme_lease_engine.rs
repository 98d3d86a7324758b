//! The ACME order lease against the real engine (a one-node Swarm): the holder's extensions
//! while it orders, and their end once another edge holds the lease. The decisions are
//! unit-tested in `src/acme/lease.rs`; this shows the Docker calls carry them out.
//!
//! Needs dockerd running as a Swarm manager and `/usr/bin/docker`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use swarm_lb::acme::lease::{self, Lease, EXPIRES, LEASE_S};
use swarm_lb::acme::store::KIND_LOCK;
use swarm_lb::acme::worker::keep_lease;
use swarm_lb::model::Host;
use swarm_lb::swarm::acme::KIND;
use swarm_lb::swarm::Docker;

const UNREACHABLE: &str =
    "Docker engine not reachable: install docker.io and start dockerd (see docs/getting-started.md)";

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

/// Removes the test's lease config, failing or not.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::process::Command::new("/usr/bin/docker")
            .args(["config", "rm", &self.0])
            .output();
    }
}

async fn expires(docker: &Docker, name: &str) -> Option<i64> {
    let configs = docker.acme_configs().await.expect("list configs");
    let config = configs.into_iter().find(|c| c.name == name)?;
    config.labels.get(EXPIRES)?.parse().ok()
}

#[tokio::test]
async fn the_holder_extends_its_lease_in_swarm_while_it_orders_and_stops_once_another_edge_holds_it(
) {
    let docker = Docker::connect(None)
        .await
        .unwrap_or_else(|e| panic!("{UNREACHABLE} ({e})"));
    let host = Host::parse(&format!("lease-{}.example", std::process::id())).unwrap();
    let name = lease::lease_name(std::slice::from_ref(&host));
    let me = "node-a/edge-1";
    // A lease taken 100 s ago: 20 s left, as the holder of a long order would see it.
    let taken = now() - 100;
    let mut labels = Lease::new(me, taken).labels(std::slice::from_ref(&host));
    labels.insert(KIND.to_owned(), KIND_LOCK.to_owned());
    docker
        .create_config(&name, b"lease", &labels)
        .await
        .unwrap_or_else(|e| {
            panic!("creating the lease config (is the engine a Swarm manager?): {e}")
        });
    let _removed = Removed(name.clone());
    assert_eq!(expires(&docker, &name).await, Some(taken + LEASE_S));

    let keeper = tokio::spawn(keep_lease(
        docker.clone(),
        name.clone(),
        me.to_owned(),
        Duration::from_millis(300),
    ));
    // Extended: the expiry moves to about now + LEASE_S.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = expires(&docker, &name).await.expect("the lease is listed");
        if e >= now() + LEASE_S - 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lease was not extended within 20 s (expires {e}, now {})",
            now()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Another edge takes the lease over (as after lapsed extensions): the keeper ends, and
    // says who holds it.
    let configs = docker.acme_configs().await.expect("list configs");
    let config = configs.iter().find(|c| c.name == name).expect("the lease");
    let mut theirs: BTreeMap<String, String> = config.labels.clone();
    theirs.insert(lease::HOLDER.to_owned(), "node-b/edge-2".to_owned());
    // A stale version is refused while the keeper updates: read again until ours is in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let configs = docker.acme_configs().await.expect("list configs");
        let config = configs.iter().find(|c| c.name == name).expect("the lease");
        if docker.update_config_labels(config, &theirs).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "could not update the lease within 20 s"
        );
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), keeper)
        .await
        .expect("the keeper ends within 20 s of another edge holding the lease")
        .expect("the keeper did not panic");
    assert_eq!(ended, "held by node-b/edge-2");
}
