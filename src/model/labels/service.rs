//! Which service, reached how: `port`, `network`, `backend_mode` (`service_cluster` is read
//! by [`super::routed_here`]).

use super::keys::{BACKEND_MODE, NETWORK, PORT};
use super::{check_chars, LabelError};
use crate::model::{Mode, Reason};

/// `com.docker.lb.port`: decimal 1..=65535, digits only.
pub fn parse_port(service: &str, value: &str) -> Result<u16, LabelError> {
    check_chars(service, PORT, value)?;
    let invalid = |reason| LabelError::invalid(service, PORT, value, reason);
    if value.is_empty() {
        return Err(invalid(Reason::Empty {
            expected: "give the port the service listens on, 1..=65535",
        }));
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(Reason::PortNotDecimal));
    }
    if value.len() > 1 && value.starts_with('0') {
        return Err(invalid(Reason::PortLeadingZero));
    }
    match value.parse::<u32>() {
        Ok(0) => Err(invalid(Reason::PortZero)),
        Ok(n) => u16::try_from(n).map_err(|_| invalid(Reason::PortOutOfRange)),
        Err(_) => Err(invalid(Reason::PortOutOfRange)),
    }
}

/// `com.docker.lb.backend_mode`: `default` or `task` -> [`Mode::Task`], `vip` -> [`Mode::Vip`].
pub fn parse_mode(service: &str, value: &str) -> Result<Mode, LabelError> {
    check_chars(service, BACKEND_MODE, value)?;
    match value {
        "default" | "task" => Ok(Mode::Task),
        "vip" => Ok(Mode::Vip),
        _ => Err(LabelError::invalid(
            service,
            BACKEND_MODE,
            value,
            Reason::UnknownMode,
        )),
    }
}

/// `com.docker.lb.network`: a network name or id; only its syntax is checked here.
pub fn parse_network(service: &str, value: &str) -> Result<Option<String>, LabelError> {
    check_chars(service, NETWORK, value)?;
    if value.is_empty() {
        return Err(LabelError::invalid(
            service,
            NETWORK,
            value,
            Reason::Empty {
                expected: "name the network HAProxy should join, or remove the label",
            },
        ));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::testing::*;
    use crate::model::labels::*;

    #[test]
    fn each_backend_mode_value_maps_to_its_mode() {
        for (value, mode) in [
            ("default", Mode::Task),
            ("task", Mode::Task),
            ("vip", Mode::Vip),
        ] {
            let r = route(&[(HOSTS, "a.example"), (PORT, "80"), (BACKEND_MODE, value)]).unwrap();
            assert_eq!(r.mode, mode, "{value}");
        }
    }

    #[test]
    fn the_network_label_is_kept_as_written() {
        let r = route(&[(HOSTS, "a.example"), (PORT, "80"), (NETWORK, "front_net")]).unwrap();
        assert_eq!(r.network.as_deref(), Some("front_net"));
    }

    #[test]
    fn hosts_make_the_port_required() {
        let errs = errors(&[(HOSTS, "a.example"), (BACKEND_MODE, "vip")]);
        assert_eq!(errs, vec![missing("web", PORT)]);
        assert_eq!(
            errs[0].to_string(),
            "service web: label com.docker.lb.port is required"
        );
    }

    #[test]
    fn ports_outside_1_to_65535_or_not_plain_decimal_are_refused() {
        for (bad, reason) in [
            ("0", "port 0"),
            ("70000", "out of range"),
            ("65536", "out of range"),
            ("99999999999999999999999", "out of range"),
            ("-1", "digits only"),
            ("+80", "digits only"),
            ("80 ", "character ' '"),
            (" 80", "character ' '"),
            ("0x50", "digits only"),
            ("080", "leading zero"),
            ("8o", "digits only"),
        ] {
            let e = parse_port("web", bad).unwrap_err();
            let line = e.to_string();
            assert!(
                line.starts_with("service web: label com.docker.lb.port="),
                "{line}"
            );
            assert!(line.contains(reason), "{bad:?}: {line}");
        }
        assert_eq!(parse_port("web", "1").unwrap(), 1);
        assert_eq!(parse_port("web", "65535").unwrap(), 65535);
    }

    #[test]
    fn an_unknown_mode_lists_the_accepted_values() {
        let e = parse_mode("web", "Vip").unwrap_err();
        assert_eq!(
            e.to_string(),
            "service web: label com.docker.lb.backend_mode=\"Vip\": unknown mode: accepted \
             values are default, task, vip"
        );
    }

    #[test]
    fn a_very_long_value_is_cut_in_the_error() {
        let e = parse_port("web", &"9".repeat(10_000)).unwrap_err();
        let LabelError::Invalid { value, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            value,
            &format!("{}...", "9".repeat(super::super::errors::SHOWN_MAX))
        );
    }
}
