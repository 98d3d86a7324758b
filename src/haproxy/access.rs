//! The access side of the rendered config (issue 23): the text that stands for
//! `{{trusted_proxies}}` in the template. The rules that use it are fixed template lines
//! (`haproxy/base.cfg`, frontend `http` and `https`); only the address list varies, and it is a
//! start-up setting (`--trusted-proxies`), so it is written into the config, not a map.
//! Two placeholders: `{{trusted_proxies}}` (HTTP balancers) and `{{proxy_protocol_sources}}`.

use crate::model::access::{Cidr, TrustedProxy};

/// The two conditions of `trusted` (see [`trusted_condition`]): (HTTP balancers, whose
/// forwarded headers are kept; PROXY protocol senders, from which a header is required).
pub fn trusted_conditions(trusted: &[TrustedProxy]) -> (String, String) {
    let pick = |proxy: bool| -> Vec<Cidr> {
        trusted
            .iter()
            .filter(|t| matches!(t, TrustedProxy::ProxyProtocol(_)) == proxy)
            .map(TrustedProxy::cidr)
            .collect()
    };
    (
        trusted_condition(&pick(false)),
        trusted_condition(&pick(true)),
    )
}

/// The ACL condition that is true when a connection's source is one of `trusted`:
/// `src <block> <block>...`, or `always_false` when the list is empty (an ACL without a
/// pattern would draw a warning on `haproxy -c` and match nothing anyway).
///
/// `src` patterns take the `<address>/<prefix>` form of both families (configuration.txt,
/// "7.1.6. Matching IPv4 and IPv6 addresses"), which is how [`Cidr`] prints.
pub fn trusted_condition(trusted: &[Cidr]) -> String {
    if trusted.is_empty() {
        return "always_false".to_owned();
    }
    let mut out = String::from("src");
    for block in trusted {
        out.push(' ');
        out.push_str(&block.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_trusted_proxy_is_a_condition_that_never_matches() {
        assert_eq!(trusted_condition(&[]), "always_false");
    }

    #[test]
    fn trusted_blocks_of_both_families_are_src_patterns() {
        let blocks: Vec<Cidr> = ["10.0.0.0/8", "::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(trusted_condition(&blocks), "src 10.0.0.0/8 ::1/128");
    }

    #[test]
    fn proxy_protocol_senders_and_http_balancers_get_a_condition_each() {
        let list: Vec<TrustedProxy> = ["10.0.0.0/8", "proxy:192.0.2.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            trusted_conditions(&list),
            ("src 10.0.0.0/8".to_owned(), "src 192.0.2.1/32".to_owned())
        );
    }
}
