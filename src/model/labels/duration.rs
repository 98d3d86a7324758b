//! The one duration syntax of every duration label (`fail_timeout`, `timeout_*`, and any new
//! one): a whole number followed by `ms`, `s` (also no unit), `m` or `h`, as nginx's and
//! HAProxy's own time values read. No sign, no fraction, no space, no leading zero, at most 10
//! digits. Each label's bounds are its own: the caller checks them and names them in its error.

/// `text` in milliseconds, or `None` when it is not a duration (an overflow included).
pub(super) fn parse_ms(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    let well_formed = matches!(number.len(), 1..=10) && (number == "0" || !number.starts_with('0'));
    well_formed
        .then(|| number.parse::<u64>().ok())
        .flatten()
        .and_then(|n| n.checked_mul(scale))
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn a_whole_number_with_ms_s_m_or_h_or_no_unit_is_read_in_milliseconds() {
        for (text, ms) in [
            ("250ms", 250),
            ("90", 90_000),
            ("90s", 90_000),
            ("5m", 300_000),
            ("24h", 86_400_000),
            ("0", 0),
            ("9999999999h", 9_999_999_999 * 3_600_000),
        ] {
            assert_eq!(parse_ms(text), Some(ms), "{text}");
        }
    }

    #[test]
    fn signs_fractions_spaces_leading_zeros_other_units_and_overflow_are_not_durations() {
        for text in [
            "",
            "s",
            "-5s",
            "+5s",
            "1.5s",
            " 5s",
            "5 s",
            "5s ",
            "05s",
            "00",
            "5d",
            "5S",
            "5min",
            "5 minutes",
            "12345678901s",
            "5sm",
        ] {
            assert_eq!(parse_ms(text), None, "{text:?}");
        }
    }
}
