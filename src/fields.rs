//! Durations as log fields: whole milliseconds or microseconds, saturating (a `u128` does not
//! fit every `tracing` value).

use std::time::Duration;

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
