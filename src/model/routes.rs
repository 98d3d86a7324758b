//! The hosts map from the routes of every service: which key (host, context root) sends a
//! request where. Pure.
//!
//! - A key one service claims names its backend (and how many path segments to strip).
//! - A key several services claim (a canary) is split: its value names the route's buckets,
//!   and each of the [`BUCKETS`] buckets names one claimant's backend. A claimant's share of
//!   the buckets is its number of ready tasks (Interlock's rule: the traffic is spread over
//!   every claimant's running tasks; a vip claimant counts once, its VIP being one server), or,
//!   when any claimant sets `com.docker.lb.weight`, its weight (1 if unset). HAProxy then
//!   balances evenly within each backend. Changing shares is a few `set map` commands.
//! - A shared key where a claimant uses a sticky cookie or ip_hash cannot keep a client on one
//!   task across services: the first claimant by name keeps it, the others get an error.
//! - The catch-all key (`default_backend`) is never split: the first claimant keeps it.
//! - A redirect takes its source key, unless another service routes that key (error), and is
//!   refused when following redirects would come back to it (a loop).

use std::collections::BTreeMap;

use super::labels::{LabelError, Redirect};
use super::{BackendName, ContextRoot, Host, MapKey, MapValue, BUCKETS};

/// One service's claim on one key of the hosts map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub service: String,
    pub backend: BackendName,
    /// Path segments stripped before the request reaches a task (`context_root_rewrite`).
    pub strip: usize,
    /// Its share when no claimant of the key sets a weight: ready tasks, or 1 for a VIP.
    pub servers: u32,
    pub weight: Option<u32>,
    /// A sticky cookie or ip_hash: the service must see every request of a client.
    pub pins_clients: bool,
}

/// One service's redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectClaim {
    pub service: String,
    pub redirect: Redirect,
}

impl RedirectClaim {
    fn key(&self) -> MapKey {
        route_key(&self.redirect.host, self.redirect.path.as_ref())
    }
}

/// The key of `host` (with `root`): `<host>/` or `<host><root>/`.
pub fn route_key(host: &Host, root: Option<&ContextRoot>) -> MapKey {
    match root {
        Some(root) if !host.is_catch_all() => MapKey::context_root(host, root),
        _ => MapKey::host(host),
    }
}

/// Claims (each list in service-name order) -> the hosts map, and an error for each claim
/// that could not be honoured.
pub fn hosts_map(
    claims: BTreeMap<MapKey, Vec<Claim>>,
    redirects: Vec<RedirectClaim>,
    errors: &mut Vec<LabelError>,
) -> BTreeMap<MapKey, MapValue> {
    let mut map = BTreeMap::new();
    for (key, claimants) in &claims {
        let [first, rest @ ..] = claimants.as_slice() else {
            continue;
        };
        let value = |c: &Claim| MapValue::backend(&c.backend, c.strip);
        if rest.is_empty() {
            map.insert(key.clone(), value(first));
            continue;
        }
        if key.is_catch_all() {
            for other in rest {
                errors.push(LabelError::DefaultConflict {
                    service: other.service.clone(),
                    owner: first.service.clone(),
                });
            }
            map.insert(key.clone(), value(first));
            continue;
        }
        if let Some(pinning) = claimants.iter().find(|c| c.pins_clients) {
            for other in rest {
                errors.push(LabelError::SharedRoute {
                    service: other.service.clone(),
                    route: key.to_string(),
                    owner: first.service.clone(),
                    pinning: pinning.service.clone(),
                });
            }
            map.insert(key.clone(), value(first));
            continue;
        }
        map.insert(key.clone(), MapValue::split(key));
        let weighted = claimants.iter().any(|c| c.weight.is_some());
        let shares: Vec<u64> = claimants
            .iter()
            .map(|c| match weighted {
                true => u64::from(c.weight.unwrap_or(1)),
                false => u64::from(c.servers),
            })
            .collect();
        let mut bucket = 0;
        for (claimant, n) in claimants.iter().zip(apportion(&shares, BUCKETS)) {
            for _ in 0..n {
                map.insert(MapKey::bucket(key, bucket), value(claimant));
                bucket += 1;
            }
        }
    }
    add_redirects(&mut map, &claims, redirects, errors);
    map
}

/// `total` buckets cut in proportion to `shares` (largest remainder), every positive share
/// getting at least one; all-zero shares are cut evenly.
pub fn apportion(shares: &[u64], total: usize) -> Vec<usize> {
    if shares.is_empty() {
        return Vec::new();
    }
    let even;
    let shares = if shares.iter().all(|&s| s == 0) {
        even = vec![1; shares.len()];
        &even
    } else {
        shares
    };
    let sum: u128 = shares.iter().map(|&s| u128::from(s)).sum();
    let total_u = total as u128;
    let mut out: Vec<usize> = shares
        .iter()
        .map(|&s| (u128::from(s) * total_u / sum) as usize)
        .collect();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Largest remainder first; ties to the earlier claimant.
    order.sort_by_key(|&i| std::cmp::Reverse(u128::from(shares[i]) * total_u % sum));
    let mut left = total - out.iter().sum::<usize>();
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    // A positive share rounded to nothing takes one bucket from the largest.
    for i in 0..shares.len() {
        if shares[i] > 0 && out[i] == 0 {
            if let Some(max) = (0..out.len()).max_by_key(|&j| (out[j], std::cmp::Reverse(j))) {
                if out[max] > 1 {
                    out[max] -= 1;
                    out[i] += 1;
                }
            }
        }
    }
    out
}

fn add_redirects(
    map: &mut BTreeMap<MapKey, MapValue>,
    claims: &BTreeMap<MapKey, Vec<Claim>>,
    redirects: Vec<RedirectClaim>,
    errors: &mut Vec<LabelError>,
) {
    // Sources another service routes, or an earlier redirect took, are refused.
    let mut taken: BTreeMap<MapKey, RedirectClaim> = BTreeMap::new();
    for r in redirects {
        let key = r.key();
        let others: Vec<String> = claims
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|c| c.service != r.service)
            .map(|c| c.service.clone())
            .collect();
        if let Some(owner) = others.first().or(taken.get(&key).map(|t| &t.service)) {
            errors.push(LabelError::RedirectConflict {
                service: r.service.clone(),
                from: source_text(&r.redirect),
                owner: owner.clone(),
            });
            continue;
        }
        taken.insert(key, r);
    }
    // A redirect whose target is matched again by a redirect source, and so on back to it.
    let looping: Vec<MapKey> = taken
        .keys()
        .filter(|start| {
            let mut at = (*start).clone();
            for _ in 0..=taken.len() {
                let Some(next) = taken
                    .get(&at)
                    .and_then(|r| matching_source(&taken, &r.redirect))
                else {
                    return false;
                };
                if &next == *start {
                    return true;
                }
                at = next;
            }
            false
        })
        .cloned()
        .collect();
    for key in looping {
        if let Some(r) = taken.remove(&key) {
            errors.push(LabelError::RedirectLoop {
                service: r.service.clone(),
                from: source_text(&r.redirect),
                target: r.redirect.target.clone(),
            });
        }
    }
    for (key, r) in taken {
        let strip = r.redirect.path.as_ref().map_or(0, ContextRoot::segments);
        map.insert(
            key,
            MapValue::redirect(r.redirect.code, strip, &r.redirect.target),
        );
    }
}

/// The key of the redirect source that the redirect's target falls under, if any: the longest
/// source on the target's host whose path is a segment prefix of the target's path.
fn matching_source(taken: &BTreeMap<MapKey, RedirectClaim>, r: &Redirect) -> Option<MapKey> {
    if !r.target.starts_with("http://") {
        // Sources are http only: an https target is never redirected again by swarm-lb.
        return None;
    }
    let target = format!(
        "{}{}/",
        r.target_host,
        r.target_path.as_ref().map_or("", ContextRoot::as_str)
    );
    taken
        .keys()
        .filter(|k| target.starts_with(k.as_str()))
        .max_by_key(|k| k.as_str().len())
        .cloned()
}

fn source_text(r: &Redirect) -> String {
    format!(
        "http://{}{}",
        r.host,
        r.path.as_ref().map_or("", ContextRoot::as_str)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cut_in_proportion_and_add_up() {
        assert_eq!(apportion(&[4, 1], 100), [80, 20]);
        assert_eq!(apportion(&[1, 1], 100), [50, 50]);
        assert_eq!(apportion(&[1, 1, 1], 100), [34, 33, 33]);
        assert_eq!(apportion(&[90, 10], 100), [90, 10]);
        assert_eq!(apportion(&[0, 3], 100), [0, 100]);
        assert_eq!(apportion(&[0, 0], 100), [50, 50]);
        assert_eq!(
            apportion(&[1000, 1], 100),
            [99, 1],
            "a positive share gets a bucket"
        );
        assert_eq!(apportion(&[u64::MAX, u64::MAX], 100), [50, 50]);
        assert_eq!(apportion(&[], 100), Vec::<usize>::new());
        for shares in [&[7u64, 3, 9, 1][..], &[1; 7], &[123, 0, 456]] {
            assert_eq!(
                apportion(shares, 100).iter().sum::<usize>(),
                100,
                "{shares:?}"
            );
        }
    }
}
