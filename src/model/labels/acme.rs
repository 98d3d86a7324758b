//! `com.docker.lb.ssl_acme=true` (issue 25, `docs/acme.md`): which of a service's hosts
//! swarm-lb orders a certificate for from the ACME CA, and why it refuses the others. Pure:
//! the route's hosts and whether a CA is configured come in, an [`AcmeHosts`] and the
//! problems go out. Every problem leaves ACME out (the service keeps its HTTP routing, and
//! whatever certificate it is served now).
//!
//! Why hosts are refused: HTTP-01 (RFC 8555 §8.3) proves control of a DNS name by an HTTP
//! request to it, so
//! - an IP literal is not a DNS name (RFC 8738's `ip` identifiers exist, but the public CAs
//!   offer them little or not at all, and never for private addresses);
//! - a single label (`intranet`) is no public name: CAs refuse it by policy (RFC 8555 §7.1.4
//!   leaves identifier policy to the CA; the CA/Browser Forum's rules forbid internal names);
//! - a wildcard (`*.a.example`) can only be validated by DNS-01 (RFC 8555 §7.1.3, §8.4), which
//!   swarm-lb does not answer;
//! - the catch-all of `default_backend` has no name at all.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::keys::{SSL_ACME, SSL_CERT, SSL_KEY, SSL_PASSTHROUGH};
use super::{parse_bool, LabelError};
use crate::model::{Host, Reason};

/// The hosts of one service a certificate is ordered for: sorted, without duplicates, each a
/// name of two labels or more that is not an IP address or a wildcard. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeHosts(Vec<Host>);

impl AcmeHosts {
    pub fn hosts(&self) -> &[Host] {
        &self.0
    }
}

/// Why `host` cannot be certified over HTTP-01, if it cannot.
pub fn uncertifiable(host: &Host) -> Option<&'static str> {
    if host.is_catch_all() {
        return Some("the default backend's catch-all has no host name");
    }
    if host.is_wildcard() {
        return Some(
            "a wildcard certificate can only be validated over DNS-01 (RFC 8555, 8.4), which \
             swarm-lb does not answer",
        );
    }
    let name = host.as_str();
    // Host names hold [a-z0-9.-] only (no IPv6 literal gets here); a dotted quad, or any
    // name whose last label is all digits, is an address, never a DNS name (RFC 1123, 2.1).
    let last = name.rsplit('.').next().unwrap_or(name);
    if name.parse::<Ipv4Addr>().is_ok() || last.bytes().all(|b| b.is_ascii_digit()) {
        return Some("an IP address is not a DNS name: HTTP-01 certifies DNS names only");
    }
    if !name.contains('.') {
        return Some("a single-label name is not public: no ACME CA issues a certificate for it");
    }
    None
}

/// `ssl_acme` of `service`, whose route claims `hosts`; `acme_on`: a CA is configured
/// (`--acme`). `Ok(None)`: the label is absent or `false`, or nothing can be ordered (the
/// reasons are in `left_out`). Refused together with `ssl_cert`/`ssl_key` (two sources for one
/// certificate) and `ssl_passthrough` (swarm-lb never serves that TLS); hosts that cannot be
/// certified are left out one by one ([`uncertifiable`]).
pub fn parse_acme(
    service: &str,
    labels: &BTreeMap<String, String>,
    hosts: &[Host],
    acme_on: bool,
    left_out: &mut Vec<LabelError>,
) -> Option<AcmeHosts> {
    let value = labels.get(SSL_ACME)?;
    match parse_bool(service, SSL_ACME, value) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            left_out.push(e);
            return None;
        }
    }
    let refuse = |reason| LabelError::invalid(service, SSL_ACME, value, reason);
    if !acme_on {
        left_out.push(refuse(Reason::AcmeOff));
        return None;
    }
    if labels.contains_key(SSL_CERT) || labels.contains_key(SSL_KEY) {
        left_out.push(refuse(Reason::AcmeWithCertificate));
        return None;
    }
    if labels.get(SSL_PASSTHROUGH).is_some_and(|v| v == "true") {
        left_out.push(refuse(Reason::AcmeWithPassthrough));
        return None;
    }
    let mut certified = BTreeSet::new();
    for host in hosts {
        match uncertifiable(host) {
            None => {
                certified.insert(host.clone());
            }
            Some(why) => left_out.push(refuse(Reason::HostLeftOut {
                host: host.to_string(),
                why: Box::new(Reason::AcmeHost { why }),
            })),
        }
    }
    if certified.is_empty() {
        left_out.push(refuse(Reason::AcmeNoHost));
        return None;
    }
    Some(AcmeHosts(certified.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn hosts(list: &[&str]) -> Vec<Host> {
        list.iter()
            .map(|h| Host::parse_claim(h).expect("host"))
            .collect()
    }

    fn acme(
        list: &[(&str, &str)],
        claimed: &[&str],
        on: bool,
    ) -> (Option<Vec<String>>, Vec<String>) {
        let mut left_out = Vec::new();
        let got = parse_acme("web", &labels(list), &hosts(claimed), on, &mut left_out);
        (
            got.map(|h| h.hosts().iter().map(|h| h.to_string()).collect()),
            left_out.iter().map(|e| e.to_string()).collect(),
        )
    }

    #[test]
    fn ssl_acme_true_orders_the_routes_public_names_sorted_once_each() {
        let (got, errors) = acme(
            &[(SSL_ACME, "true")],
            &["b.example", "a.example", "b.example"],
            true,
        );
        assert_eq!(got, Some(vec!["a.example".into(), "b.example".into()]));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn absent_or_false_orders_nothing_and_says_nothing() {
        assert_eq!(acme(&[], &["a.example"], true), (None, vec![]));
        assert_eq!(
            acme(&[(SSL_ACME, "false")], &["a.example"], false),
            (None, vec![])
        );
    }

    #[test]
    fn a_value_other_than_true_or_false_is_refused() {
        let (got, errors) = acme(&[(SSL_ACME, "yes")], &["a.example"], true);
        assert_eq!(got, None);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(SSL_ACME), "{errors:?}");
    }

    #[test]
    fn without_a_configured_ca_the_label_is_refused_naming_the_flag() {
        let (got, errors) = acme(&[(SSL_ACME, "true")], &["a.example"], false);
        assert_eq!(got, None);
        assert!(errors[0].contains("--acme"), "{errors:?}");
    }

    #[test]
    fn with_a_labelled_certificate_or_passthrough_ssl_acme_is_refused() {
        for other in [
            vec![(SSL_CERT, "c"), (SSL_KEY, "k")],
            vec![(SSL_CERT, "c")],
            vec![(SSL_PASSTHROUGH, "true")],
        ] {
            let mut list = other.clone();
            list.push((SSL_ACME, "true"));
            let (got, errors) = acme(&list, &["a.example"], true);
            assert_eq!(got, None, "{other:?}");
            assert_eq!(errors.len(), 1, "{other:?}: {errors:?}");
        }
        let (got, errors) = acme(&[(SSL_ACME, "true")], &["a.example"], true);
        assert!(got.is_some() && errors.is_empty());
    }

    #[test]
    fn ip_literals_single_labels_and_wildcards_are_left_out_each_with_its_reason() {
        let (got, errors) = acme(
            &[(SSL_ACME, "true")],
            &[
                "10.0.0.1",
                "intranet",
                "*.a.example",
                "b.example",
                "host.123",
            ],
            true,
        );
        assert_eq!(got, Some(vec!["b.example".into()]));
        assert_eq!(errors.len(), 4, "{errors:?}");
        let all = errors.join("\n");
        for expected in ["IP address", "single-label", "DNS-01", "\"10.0.0.1\""] {
            assert!(all.contains(expected), "{expected}: {all}");
        }
    }

    #[test]
    fn a_service_with_no_certifiable_host_orders_nothing_and_says_so() {
        let (got, errors) = acme(&[(SSL_ACME, "true")], &["intranet"], true);
        assert_eq!(got, None);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[1].contains("none of the service's hosts"),
            "{errors:?}"
        );
        let catch_all = vec![Host::catch_all()];
        let mut left_out = Vec::new();
        let got = parse_acme(
            "web",
            &labels(&[(SSL_ACME, "true")]),
            &catch_all,
            true,
            &mut left_out,
        );
        assert_eq!(got, None);
        assert!(
            left_out[0].to_string().contains("catch-all"),
            "{left_out:?}"
        );
    }
}
