//! What the CA's ACME Renewal Information (RFC 9773) said of the certificates served now, and
//! the renewal decision drawn from it. Pure: the worker ([`super::worker`]) asks the CA and
//! fills [`Ari`]; times are unix seconds passed in.

use std::collections::BTreeMap;

use instant_acme::CertificateIdentifier;

use super::schedule;
use super::store::StoredCert;

/// What the CA's renewal information (RFC 9773) said of the certificates served now.
#[derive(Debug, Default)]
pub(super) struct Ari {
    /// Digest -> the answer for its served certificate.
    pub(super) known: BTreeMap<String, AriAnswer>,
    /// Until when this edge does not try to read the CA's directory again for renewal
    /// information (it failed: a worker edge with no route to the CA, or the CA down).
    pub(super) directory_failed_until: Option<i64>,
}

#[derive(Debug, Clone)]
pub(super) struct AriAnswer {
    /// The certificate's secret (its `.crt`).
    pub(super) crt: String,
    /// Its ARI identifier, once read from the delivered certificate.
    pub(super) id: Option<CertificateIdentifier<'static>>,
    /// The CA's suggested window, if it gave one.
    pub(super) window: Option<schedule::Window>,
    /// The CA's directory offers renewal information (so a renewal names what it replaces).
    pub(super) offered: bool,
    /// When to ask again (unix seconds).
    pub(super) next_ask: i64,
    /// The last ask failed (repeats log at debug).
    pub(super) failing: bool,
}

impl Ari {
    /// Whether `cert` (served for `digest`) is due at `now`, from what is known (no request).
    pub(super) fn due(&self, digest: &str, cert: &StoredCert, now: i64) -> bool {
        let window = self
            .known
            .get(digest)
            .filter(|a| a.crt == cert.crt)
            .and_then(|a| a.window);
        let fraction = window_fraction(&cert.crt);
        let (at, _) = schedule::renewal(now, cert.not_before, cert.not_after, window, fraction);
        now >= at
    }

    /// The certificate a renewal of `digest` replaces, when the CA offers renewal information
    /// and the answer is about `serving` (the certificate's secret served now: an expired one
    /// is not named).
    pub(super) fn replaces(
        &self,
        digest: &str,
        serving: Option<&str>,
    ) -> Option<CertificateIdentifier<'static>> {
        self.known
            .get(digest)
            .filter(|a| a.offered && Some(a.crt.as_str()) == serving)
            .and_then(|a| a.id.clone())
    }
}

/// Where in the CA's window a certificate renews, in `[0, 1)`: from the SHA-256 of its secret's
/// name, so every edge picks the same point (one order, rather than the earliest of every
/// edge's draws) while certificates spread uniformly over their windows (RFC 9773 §4.2).
pub(super) fn window_fraction(crt: &str) -> f64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, crt.as_bytes());
    let mut head = [0_u8; 8];
    head.copy_from_slice(&digest.as_ref()[..8]);
    // 53 bits: exactly representable, so the result stays below 1.
    (u64::from_be_bytes(head) >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn cert(crt: &str, not_before: i64, not_after: i64) -> StoredCert {
        StoredCert {
            crt: crt.into(),
            key: crt.replace(".crt", ".key"),
            crt_id: "c".into(),
            key_id: "k".into(),
            not_before,
            not_after,
            stored: not_before,
            hosts: vec!["a.example".into()],
        }
    }

    fn id() -> CertificateIdentifier<'static> {
        CertificateIdentifier {
            authority_key_identifier: "aki".into(),
            serial: "serial".into(),
        }
    }

    fn answer(crt: &str, window: Option<schedule::Window>, offered: bool) -> AriAnswer {
        AriAnswer {
            crt: crt.into(),
            id: Some(id()),
            window,
            offered,
            next_ask: 0,
            failing: false,
        }
    }

    #[test]
    fn with_nothing_known_or_no_renewal_information_a_certificate_is_due_at_two_thirds() {
        let c = cert("swarm-lb.acme.d.0001.crt", 0, 90 * DAY);
        let mut ari = Ari::default();
        assert!(!ari.due("d", &c, 60 * DAY - 1));
        assert!(ari.due("d", &c, 60 * DAY));
        ari.known.insert("d".into(), answer(&c.crt, None, false));
        assert!(!ari.due("d", &c, 60 * DAY - 1));
        assert!(ari.due("d", &c, 60 * DAY));
        assert_eq!(
            ari.replaces("d", Some(&c.crt)),
            None,
            "no `replaces` where ARI is not offered"
        );
    }

    #[test]
    fn a_cas_window_moves_renewal_and_a_renewal_names_the_certificate_it_replaces() {
        let c = cert("swarm-lb.acme.d.0001.crt", 0, 90 * DAY);
        let mut ari = Ari::default();
        // The CA asks for renewal in days 10-11 (an incident, say): due by day 11, not at 60.
        let w = schedule::Window {
            start: 10 * DAY,
            end: 11 * DAY,
        };
        ari.known.insert("d".into(), answer(&c.crt, Some(w), true));
        assert!(!ari.due("d", &c, 10 * DAY - 1));
        assert!(ari.due("d", &c, 11 * DAY));
        assert_eq!(ari.replaces("d", Some(&c.crt)), Some(id()));
        assert_eq!(
            ari.replaces("d", None),
            None,
            "nothing served: nothing named"
        );
        // A window given for an older certificate of the names says nothing of this one.
        let newer = cert("swarm-lb.acme.d.0002.crt", 0, 90 * DAY);
        assert!(!ari.due("d", &newer, 11 * DAY));
        assert_eq!(ari.replaces("d", Some(&newer.crt)), None);
        // A malformed window: two thirds.
        let bad = schedule::Window {
            start: 11 * DAY,
            end: 10 * DAY,
        };
        ari.known
            .insert("d".into(), answer(&c.crt, Some(bad), true));
        assert!(!ari.due("d", &c, 59 * DAY));
        assert!(ari.due("d", &c, 60 * DAY));
    }

    #[test]
    fn every_edge_picks_the_same_point_of_a_window_and_certificates_spread_over_it() {
        let f = window_fraction("swarm-lb.acme.d.0001.crt");
        assert_eq!(f, window_fraction("swarm-lb.acme.d.0001.crt"));
        let fractions: Vec<f64> = (0..1_000)
            .map(|n| window_fraction(&format!("swarm-lb.acme.d.{n:08x}.crt")))
            .collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        // Roughly uniform: each tenth of the window gets 100 +- 50 of 1,000 certificates.
        for tenth in 0..10 {
            let lo = f64::from(tenth) / 10.0;
            let n = fractions
                .iter()
                .filter(|f| (lo..lo + 0.1).contains(*f))
                .count();
            assert!((50..150).contains(&n), "tenth {tenth}: {n}");
        }
    }
}
