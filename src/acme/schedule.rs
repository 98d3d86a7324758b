//! When to order again. Pure: times are unix seconds passed in, nothing reads a clock.
//!
//! - Renewal: when two thirds of the certificate's lifetime has passed (Let's Encrypt's own
//!   advice for 90-day certificates: renew at 60 days; it keeps a third of the lifetime for
//!   retries). A CA's ACME Renewal Information window (RFC 9773) takes precedence later.
//! - Retries after a failed order: five minutes, doubling, at most six hours. Let's Encrypt
//!   allows 5 failed validations per account, name and hour: failures at 0, 5, 15, 35 and 75
//!   minutes put at most 4 in any hour. Never before the CA's `Retry-After` when the caller
//!   has one (RFC 8555 §6.6: a `rateLimited` answer carries one).

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

/// When to try again after `failures` failed orders in a row (1 or more), the last at `now`;
/// `retry_after`: the CA's `Retry-After` as a unix time, if it sent one.
pub fn retry_at(now: i64, failures: u32, retry_after: Option<i64>) -> i64 {
    let doublings = failures.saturating_sub(1).min(20);
    let delay = FIRST_RETRY_S
        .saturating_mul(1_i64 << doublings)
        .min(MAX_RETRY_S);
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
        let delays: Vec<i64> = (1..=9).map(|n| retry_at(0, n, None)).collect();
        assert_eq!(
            delays,
            [300, 600, 1200, 2400, 4800, 9600, 19200, 21600, 21600]
        );
        // Failure times when every retry fails at once: never 5 within an hour (Let's
        // Encrypt's failed-validation limit per account, name and hour).
        let mut at = vec![0_i64];
        for n in 1..=8 {
            at.push(retry_at(*at.last().unwrap(), n, None));
        }
        for w in at.windows(5) {
            assert!(w[4] - w[0] >= 3_600, "5 failures within an hour: {at:?}");
        }
        assert_eq!(retry_at(0, u32::MAX, None), MAX_RETRY_S);
        assert_eq!(
            retry_at(100, 0, None),
            400,
            "0 failures counts as the first"
        );
    }

    #[test]
    fn the_cas_retry_after_is_a_floor_never_a_shortcut() {
        assert_eq!(retry_at(0, 1, Some(3_600)), 3_600);
        assert_eq!(retry_at(0, 1, Some(10)), FIRST_RETRY_S);
    }
}
