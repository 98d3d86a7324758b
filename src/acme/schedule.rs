//! When to order again. Pure: times are unix seconds passed in, nothing reads a clock.
//!
//! - Renewal: at a point of the CA's ACME Renewal Information window (RFC 9773 §4.2) when it
//!   offers one ([`renewal`]), else when two thirds of the certificate's lifetime has passed
//!   (Let's Encrypt's own advice for 90-day certificates: renew at 60 days; it keeps a third
//!   of the lifetime for retries).
//! - When to ask the CA's renewal information again: [`ari_next_ask`].
//! - Retries after a failed order: five minutes, doubling, at most six hours. Let's Encrypt
//!   allows 5 failed validations per account, name and hour: failures at 0, 5, 15, 35 and 75
//!   minutes put at most 4 in any hour. A `rateLimited` refusal (RFC 8555 §6.6) waits longer:
//!   one hour, doubling, at most a day. Never before the CA's `Retry-After` when the caller
//!   has one.

/// The first retry's delay, in seconds.
pub const FIRST_RETRY_S: i64 = 300;
/// The longest delay between retries, in seconds.
pub const MAX_RETRY_S: i64 = 6 * 3600;

/// When a certificate valid from `not_before` to `not_after` (unix seconds) is due for
/// renewal: two thirds into its lifetime (at `not_before` for an empty or inverted one).
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    not_before.saturating_add(lifetime / 3 * 2 + (lifetime % 3) * 2 / 3)
}

/// Whether the certificate is due at `now`.
pub fn due(now: i64, not_before: i64, not_after: i64) -> bool {
    now >= renew_at(not_before, not_after)
}

/// A CA's suggested renewal window (RFC 9773 §4.2), unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// Where a renewal time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// A point of the CA's window (RFC 9773).
    Ari,
    /// Two thirds of the lifetime: no window, or one [`usable`] refused.
    TwoThirds,
}

/// Whether a window can be followed for a certificate valid from `not_before` to `not_after`.
/// Refused (the two-thirds rule applies instead): a window whose end is not after its start
/// (RFC 9773 §4.2: clients MUST treat it as no answer), one that starts at or after notAfter
/// (renewing then leaves the names without a valid certificate), and one that ends before
/// notBefore (it cannot be about this certificate; followed, it would renew every new
/// certificate at once, in a loop). A window wholly in the past but after notBefore is the
/// CA asking for renewal now (RFC 9773 §4.2, e.g. before a revocation) and is followed.
pub fn usable(window: Window, not_before: i64, not_after: i64) -> bool {
    window.start < window.end && window.start < not_after && window.end >= not_before
}

/// When to renew a certificate valid from `not_before` to `not_after`, at `now`, given the
/// CA's window if it sent one and `fraction` in `[0, 1)` chosen by the caller (RFC 9773 §4.2:
/// a uniformly random point of the window, so that the CA's clients spread out). A window
/// whose end has passed means now; the part of a window after notAfter is cut off. Without a
/// [`usable`] window: [`renew_at`].
pub fn renewal(
    now: i64,
    not_before: i64,
    not_after: i64,
    window: Option<Window>,
    fraction: f64,
) -> (i64, Basis) {
    let Some(w) = window.filter(|w| usable(*w, not_before, not_after)) else {
        return (renew_at(not_before, not_after), Basis::TwoThirds);
    };
    let end = w.end.min(not_after);
    if end <= now {
        return (now, Basis::Ari);
    }
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Lossless enough: windows are days, f64 holds 2^53 seconds exactly.
    let span = end.saturating_sub(w.start) as f64;
    let offset = (span * fraction) as i64;
    (w.start.saturating_add(offset).min(end - 1), Basis::Ari)
}

/// The shortest wait before asking the CA's renewal information again, in seconds.
pub const ARI_MIN_ASK_S: i64 = 3600;
/// The longest wait before asking the CA's renewal information again, in seconds.
pub const ARI_MAX_ASK_S: i64 = 24 * 3600;

/// When to ask the CA's renewal information for a certificate again, after an answer (or a
/// failure) at `now` with `retry_after_s` its `Retry-After` in seconds (`None`: a failure or no
/// header): that delay clamped to one hour..one day. RFC 9773 §4.3.2 ("Client Handling of
/// Retry-After") asks clients to set reasonable limits and gives, as its example, values under
/// one minute treated as one minute and over one day as one day: the day is its, the hour is
/// ours (every edge asks for every certificate, and CAs set hours: Let's Encrypt six). A
/// failure waits the hour (§4.3.3 suggests six hours for long-term errors, or a local default;
/// an hour keeps a revocation window from being missed for long).
pub fn ari_next_ask(now: i64, retry_after_s: Option<i64>) -> i64 {
    let delay = retry_after_s
        .unwrap_or(ARI_MIN_ASK_S)
        .clamp(ARI_MIN_ASK_S, ARI_MAX_ASK_S);
    now.saturating_add(delay)
}

/// A rate-limited order's first retry, in seconds: Let's Encrypt's limits refill over hours
/// (failed validations per hour, new orders per three hours, certificates per week).
pub const RATE_LIMITED_FIRST_RETRY_S: i64 = 3600;
/// The longest delay between retries of a rate-limited order, in seconds.
pub const RATE_LIMITED_MAX_RETRY_S: i64 = 24 * 3600;

/// When to try again after `failures` failed orders in a row (1 or more), the last at `now`;
/// `retry_after`: the CA's `Retry-After` as a unix time, if it sent one; `rate_limited`: the
/// last failure was the CA's `rateLimited` (RFC 8555 §6.6), which waits longer.
pub fn retry_at(now: i64, failures: u32, retry_after: Option<i64>, rate_limited: bool) -> i64 {
    let (first, max) = if rate_limited {
        (RATE_LIMITED_FIRST_RETRY_S, RATE_LIMITED_MAX_RETRY_S)
    } else {
        (FIRST_RETRY_S, MAX_RETRY_S)
    };
    let doublings = failures.saturating_sub(1).min(20);
    let delay = first.saturating_mul(1_i64 << doublings).min(max);
    let ours = now.saturating_add(delay);
    retry_after.map_or(ours, |ca| ours.max(ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn a_ninety_day_certificate_is_renewed_at_sixty_days() {
        assert_eq!(renew_at(1_000, 1_000 + 90 * DAY), 1_000 + 60 * DAY);
        assert!(!due(1_000 + 60 * DAY - 1, 1_000, 1_000 + 90 * DAY));
        assert!(due(1_000 + 60 * DAY, 1_000, 1_000 + 90 * DAY));
    }

    #[test]
    fn a_short_lived_certificate_is_renewed_two_thirds_in_and_odd_lifetimes_round_down() {
        // Pebble can issue certificates valid for minutes.
        assert_eq!(renew_at(0, 300), 200);
        assert_eq!(renew_at(0, 10), 6);
        assert_eq!(renew_at(0, 11), 7);
        assert_eq!(renew_at(50, 50), 50);
        assert_eq!(renew_at(50, 10), 50, "an inverted validity is due at once");
        assert_eq!(renew_at(i64::MAX - 1, i64::MAX), i64::MAX - 1);
    }

    #[test]
    fn retries_double_from_five_minutes_up_to_six_hours_and_fail_at_most_four_times_an_hour() {
        let delays: Vec<i64> = (1..=9).map(|n| retry_at(0, n, None, false)).collect();
        assert_eq!(
            delays,
            [300, 600, 1200, 2400, 4800, 9600, 19200, 21600, 21600]
        );
        // Failure times when every retry fails at once: never 5 within an hour (Let's
        // Encrypt's failed-validation limit per account, name and hour).
        let mut at = vec![0_i64];
        for n in 1..=8 {
            at.push(retry_at(*at.last().unwrap(), n, None, false));
        }
        for w in at.windows(5) {
            assert!(w[4] - w[0] >= 3_600, "5 failures within an hour: {at:?}");
        }
        assert_eq!(retry_at(0, u32::MAX, None, false), MAX_RETRY_S);
        assert_eq!(
            retry_at(100, 0, None, false),
            400,
            "0 failures counts as the first"
        );
    }

    #[test]
    fn a_rate_limited_order_waits_an_hour_doubling_up_to_a_day() {
        let delays: Vec<i64> = (1..=7).map(|n| retry_at(0, n, None, true)).collect();
        assert_eq!(
            delays,
            [3_600, 7_200, 14_400, 28_800, 57_600, 86_400, 86_400]
        );
        for n in 1..=12 {
            assert!(retry_at(0, n, None, true) >= retry_at(0, n, None, false));
        }
        assert_eq!(retry_at(0, 1, Some(2 * DAY), true), 2 * DAY);
        assert_eq!(retry_at(0, u32::MAX, None, true), RATE_LIMITED_MAX_RETRY_S);
    }

    const NB: i64 = 1_000_000;
    const NA: i64 = NB + 90 * DAY;

    fn window(start: i64, end: i64) -> Option<Window> {
        Some(Window { start, end })
    }

    #[test]
    fn without_a_window_renewal_is_at_two_thirds_whatever_the_fraction() {
        for f in [0.0, 0.5, 0.999] {
            assert_eq!(
                renewal(NB, NB, NA, None, f),
                (NB + 60 * DAY, Basis::TwoThirds)
            );
        }
    }

    #[test]
    fn a_window_gives_the_point_the_fraction_picks_within_it() {
        let (s, e) = (NB + 58 * DAY, NB + 60 * DAY);
        assert_eq!(renewal(NB, NB, NA, window(s, e), 0.0), (s, Basis::Ari));
        assert_eq!(
            renewal(NB, NB, NA, window(s, e), 0.5),
            (s + DAY, Basis::Ari)
        );
        let (late, basis) = renewal(NB, NB, NA, window(s, e), 0.999_999_999);
        assert_eq!(basis, Basis::Ari);
        assert!((s..e).contains(&late), "{late}");
        // Out-of-range fractions from a careless caller stay inside the window.
        for f in [-1.0, 1.0, 7.0, f64::NAN, f64::INFINITY] {
            let (at, _) = renewal(NB, NB, NA, window(s, e), f);
            assert!((s..e).contains(&at), "{f}: {at}");
        }
        // Uniform: ten equal steps of the fraction give ten equal steps of time.
        let points: Vec<i64> = (0..10)
            .map(|i| renewal(NB, NB, NA, window(s, s + 10_000), f64::from(i) / 10.0).0 - s)
            .collect();
        assert_eq!(
            points,
            [0, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000, 9_000]
        );
    }

    #[test]
    fn a_window_earlier_than_two_thirds_is_followed_and_one_already_over_means_now() {
        // A CA moving renewal early (RFC 9773 §4.2: e.g. ahead of a revocation).
        let now = NB + 10 * DAY;
        let (at, basis) = renewal(now, NB, NA, window(NB + DAY, NB + 2 * DAY), 0.7);
        assert_eq!(
            (at, basis),
            (now, Basis::Ari),
            "the window's end has passed"
        );
        let (at, _) = renewal(now, NB, NA, window(now - DAY, now + DAY), 0.0);
        assert_eq!(at, now - DAY, "a start in the past is due at once");
        assert!(at <= now);
    }

    #[test]
    fn a_malformed_or_wild_window_is_ignored_for_the_two_thirds_rule() {
        let two_thirds = (NB + 60 * DAY, Basis::TwoThirds);
        // RFC 9773 §4.2: end not after start is no answer at all.
        assert_eq!(
            renewal(NB, NB, NA, window(NB + 60 * DAY, NB + 59 * DAY), 0.5),
            two_thirds
        );
        assert_eq!(
            renewal(NB, NB, NA, window(NB + 60 * DAY, NB + 60 * DAY), 0.5),
            two_thirds
        );
        // Starting at or after expiry: the names would go without a certificate.
        assert_eq!(renewal(NB, NB, NA, window(NA, NA + DAY), 0.0), two_thirds);
        assert_eq!(
            renewal(NB, NB, NA, window(NA + 365 * DAY, NA + 366 * DAY), 0.0),
            two_thirds
        );
        // Ending before the certificate was valid (1970, say): not about this certificate.
        assert_eq!(renewal(NB + DAY, NB, NA, window(0, 3_600), 0.0), two_thirds);
        assert_eq!(
            renewal(NB + DAY, NB, NA, window(i64::MIN, NB - 1), 0.0),
            two_thirds
        );
        // A window reaching past expiry is cut at notAfter.
        let (at, basis) = renewal(NB, NB, NA, window(NA - DAY, i64::MAX), 0.999_999);
        assert_eq!(basis, Basis::Ari);
        assert!((NA - DAY..NA).contains(&at), "{at}");
    }

    #[test]
    fn renewal_information_is_asked_again_after_its_retry_after_kept_within_an_hour_and_a_day() {
        assert_eq!(ari_next_ask(100, Some(6 * 3600)), 100 + 6 * 3600);
        assert_eq!(ari_next_ask(100, Some(0)), 100 + 3600, "at most hourly");
        assert_eq!(ari_next_ask(100, Some(-5)), 100 + 3600);
        assert_eq!(
            ari_next_ask(100, Some(365 * DAY)),
            100 + DAY,
            "at least daily"
        );
        assert_eq!(
            ari_next_ask(100, None),
            100 + 3600,
            "a failure waits the hour"
        );
        assert_eq!(ari_next_ask(i64::MAX, Some(DAY)), i64::MAX);
    }

    #[test]
    fn the_cas_retry_after_is_a_floor_never_a_shortcut() {
        assert_eq!(retry_at(0, 1, Some(3_600), false), 3_600);
        assert_eq!(retry_at(0, 1, Some(10), false), FIRST_RETRY_S);
    }
}
