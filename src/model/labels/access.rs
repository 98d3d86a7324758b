//! Access: `ip_allow` and `ip_deny`, who may reach the service by client address. A problem
//! with either refuses the route as a whole, so the service keeps its last good routing, and
//! with it its last good policy: a broken list never opens the service up.

use std::collections::BTreeMap;

use super::keys::{ACCESS_BLOCKS_MAX, IP_ALLOW, IP_DENY};
use super::{bad_char, LabelError, Reader};
use crate::model::access::{parse_cidr_list, AccessPolicy};
use crate::model::Reason;

/// One list label: addresses and CIDRs, comma-separated (see [`parse_cidr_list`]), at least
/// one and at most [`ACCESS_BLOCKS_MAX`].
fn parse_list(
    service: &str,
    label: &str,
    value: &str,
) -> Result<Vec<crate::model::access::Cidr>, LabelError> {
    let invalid = |reason| LabelError::invalid(service, label, value, reason);
    // Spaces around commas are how lists are written by hand; any other syntax is refused.
    let compact: String = value.chars().filter(|c| *c != ' ').collect();
    if let Some(reason) = bad_char(label, &compact) {
        return Err(invalid(reason));
    }
    let list = parse_cidr_list(value).map_err(|e| invalid(Reason::NotAnAddressBlock(e)))?;
    if list.is_empty() {
        return Err(invalid(Reason::Empty {
            expected: "list at least one address or CIDR (remove the label to drop the list)",
        }));
    }
    if list.len() > ACCESS_BLOCKS_MAX {
        return Err(invalid(Reason::TooManyBlocks { count: list.len() }));
    }
    Ok(list)
}

/// `ip_allow` and `ip_deny`; `None` when either is refused (the errors are in `errors`).
pub(super) fn parse_access(
    service: &str,
    labels: &BTreeMap<String, String>,
    errors: &mut Vec<LabelError>,
) -> Option<AccessPolicy> {
    let read = Reader { service, labels };
    let allow = read.optional(IP_ALLOW, errors, |s, v| parse_list(s, IP_ALLOW, v));
    let deny = read.optional(IP_DENY, errors, |s, v| parse_list(s, IP_DENY, v));
    Some(AccessPolicy {
        allow: allow?,
        deny: deny?.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn allow_and_deny_lists_of_both_families_are_read() {
        let mut errors = Vec::new();
        let policy = parse_access(
            "web",
            &labels(&[
                (IP_ALLOW, "10.0.0.0/8, 2001:db8::/32"),
                (IP_DENY, "10.1.2.3"),
            ]),
            &mut errors,
        )
        .expect("policy");
        assert_eq!(errors, vec![]);
        let shown: Vec<String> = policy
            .allow
            .expect("allow list")
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(policy.deny.len(), 1);
    }

    #[test]
    fn no_label_is_no_policy() {
        let mut errors = Vec::new();
        assert_eq!(
            parse_access("web", &labels(&[]), &mut errors),
            Some(AccessPolicy::default())
        );
    }

    #[test]
    fn a_bad_list_is_an_error_naming_service_label_and_reason_and_no_policy() {
        for (label, value, reason) in [
            (IP_ALLOW, "10.0.0.0/33", "prefix length"),
            (
                IP_ALLOW,
                "10.0.0.0/8,example.com",
                "\"example.com\" is not an IPv4",
            ),
            (IP_DENY, " , ", "empty"),
            (IP_DENY, "10.0.0.1;x", "character ';'"),
            (IP_ALLOW, "10.0.0.1\t", "character '\\t'"),
        ] {
            let mut errors = Vec::new();
            let got = parse_access("web", &labels(&[(label, value)]), &mut errors);
            assert_eq!(got, None, "{label}={value:?}");
            let text = errors.iter().map(|e| e.to_string()).collect::<String>();
            assert!(
                text.starts_with(&format!("service web: label {label}=")),
                "{text}"
            );
            assert!(text.contains(reason), "{label}={value:?}: {text}");
        }
        let many = (0..=ACCESS_BLOCKS_MAX)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect::<Vec<_>>()
            .join(",");
        let mut errors = Vec::new();
        assert_eq!(
            parse_access("web", &labels(&[(IP_ALLOW, &many)]), &mut errors),
            None
        );
        assert!(
            errors[0].to_string().contains("at most 1000"),
            "{}",
            errors[0]
        );
    }
}
