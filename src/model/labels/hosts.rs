//! The hosts routed to a service: `hosts` and `default_backend`. Host lists are written by
//! hand: items are trimmed of spaces and tabs, empty items are skipped with a warning, and a
//! malformed item is refused alone while the other hosts still route.

use std::collections::BTreeSet;

use super::errors::shown;
use super::keys::{HOSTS, HOSTS_MAX};
use super::{bad_char, list_items, LabelError};
use crate::model::{Host, Reason};

/// What `com.docker.lb.hosts` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList {
    /// The hosts to route: sorted, without duplicates (`A.example`, `a.example` and
    /// `a.example.` are one host).
    pub hosts: Vec<Host>,
    /// One error per refused item, naming it; the other items still route.
    pub refused: Vec<LabelError>,
    /// Empty items were skipped (a comma at an end, two in a row).
    pub skipped_empty: bool,
}

/// `com.docker.lb.hosts`: comma-separated host names, without ports. Each item is trimmed of
/// spaces and tabs (lists copied from documents, `a.example, b.example ,`); an empty item is
/// skipped; an item that is not a host name (a space or `;` inside, control characters,
/// non-ASCII, a port) is refused alone with an error naming it. A value with no item at all
/// gives one error ("empty").
pub fn parse_hosts(service: &str, value: &str) -> HostList {
    let refuse = |item: &str, why: Reason| {
        LabelError::invalid(
            service,
            HOSTS,
            value,
            Reason::HostLeftOut {
                host: shown(item),
                why: Box::new(why),
            },
        )
    };
    let mut list = HostList::default();
    let mut hosts = BTreeSet::new();
    for item in list_items(value) {
        if item.is_empty() {
            list.skipped_empty = true;
            continue;
        }
        if let Some(reason) = bad_char(HOSTS, item) {
            list.refused.push(refuse(item, reason));
            continue;
        }
        if item.contains(':') {
            list.refused.push(refuse(item, Reason::HostWithPort));
            continue;
        }
        match Host::parse_claim(item) {
            Ok(host) => {
                hosts.insert(host);
            }
            Err(e) => list.refused.push(refuse(item, Reason::Name(e))),
        }
    }
    if hosts.len() > HOSTS_MAX {
        list.refused = vec![LabelError::invalid(
            service,
            HOSTS,
            value,
            Reason::TooManyHosts { count: hosts.len() },
        )];
        return list;
    }
    if hosts.is_empty() && list.refused.is_empty() {
        list.refused.push(LabelError::invalid(
            service,
            HOSTS,
            value,
            Reason::Empty {
                expected: "list at least one host",
            },
        ));
    }
    list.hosts = hosts.into_iter().collect();
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::testing::*;
    use crate::model::labels::*;

    /// The hosts routed and the errors on items left out.
    fn host_list(value: &str) -> (Vec<String>, Vec<String>) {
        let list = parse_hosts("web", value);
        (
            list.hosts.iter().map(|h| h.to_string()).collect(),
            list.refused.iter().map(|e| e.to_string()).collect(),
        )
    }

    #[test]
    fn the_default_backend_needs_no_hosts_label() {
        let r = route(&[(DEFAULT_BACKEND, "true"), (PORT, "80")]).unwrap();
        assert_eq!(r.hosts, vec![Host::catch_all()]);
        let errs = errors(&[(DEFAULT_BACKEND, "yes"), (PORT, "80")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].to_string().contains(DEFAULT_BACKEND), "{errs:?}");
    }

    #[test]
    fn hosts_separated_by_comma_and_space_are_accepted_as_interlock_documents_them() {
        let (hosts, errs) = host_list("a.example, b.example");
        assert_eq!(hosts, ["a.example", "b.example"]);
        assert_eq!(errs, Vec::<String>::new());
    }

    #[test]
    fn a_host_list_written_by_hand_is_trimmed_and_its_empty_items_skipped() {
        for value in [
            "a.example.test, b.example.test ,c.example.test,",
            "\ta.example.test,\tb.example.test\t,  c.example.test  ",
            ",a.example.test,,b.example.test, ,c.example.test",
            "c.example.test,B.Example.Test,a.example.test.,a.example.test",
        ] {
            let list = parse_hosts("web", value);
            let hosts: Vec<&str> = list.hosts.iter().map(Host::as_str).collect();
            assert_eq!(
                hosts,
                ["a.example.test", "b.example.test", "c.example.test"],
                "{value:?}"
            );
            assert_eq!(list.refused, vec![], "{value:?}");
        }
        assert!(parse_hosts("web", "a.example,").skipped_empty);
        assert!(!parse_hosts("web", "a.example, b.example").skipped_empty);
    }

    #[test]
    fn empty_items_give_one_warning_naming_service_and_label_and_the_hosts_route() {
        let parsed = parse(&service(&[
            (HOSTS, "a.example.test, b.example.test ,c.example.test,,"),
            (PORT, "80"),
        ]))
        .unwrap();
        let Verdict::Route(route) = &parsed.route else {
            panic!("{parsed:?}")
        };
        assert_eq!(route.hosts.len(), 3);
        let lines: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            lines,
            [
                "service web: label com.docker.lb.hosts has empty items (a comma at an end or two \
              in a row); they are skipped"
            ]
        );
    }

    #[test]
    fn a_malformed_item_is_refused_alone_naming_it_and_the_other_hosts_route() {
        for (bad, why) in [
            ("b example.test", "cannot contain spaces"),
            ("b;example.test", "character ';'"),
            ("b#example.test", "character '#'"),
            ("b\u{7}example.test", "character '\\u{7}'"),
            ("b\nexample.test", "character '\\n'"),
            ("b\u{0}example.test", "character '\\0'"),
            ("caf\u{e9}.example.test", "only plain ASCII"),
            ("b.example.test:8080", "it has a port"),
            ("b..example.test", "host label"),
            ("b.example.test..", "host label"),
            (".", "host label"),
            ("a.*.example.test", "character '*'"),
            ("*.test", "host label \"*.test\""),
        ] {
            let value = format!("a.example.test, {bad} ,c.example.test");
            let parsed = parse(&service(&[(HOSTS, &value), (PORT, "80")])).unwrap();
            let Verdict::Route(route) = &parsed.route else {
                panic!("{bad:?}: {parsed:?}")
            };
            let hosts: Vec<&str> = route.hosts.iter().map(Host::as_str).collect();
            assert_eq!(hosts, ["a.example.test", "c.example.test"], "{bad:?}");
            assert_eq!(parsed.left_out.len(), 1, "{bad:?}: {:?}", parsed.left_out);
            let line = parsed.left_out[0].to_string();
            assert!(
                line.starts_with("service web: label com.docker.lb.hosts="),
                "{line}"
            );
            assert!(
                line.contains(&format!("host {:?} is left out", bad)),
                "{bad:?}: {line}"
            );
            assert!(line.contains(why), "{bad:?}: {line}");
            assert!(!line.contains('\n') && !line.contains('\0'), "{line:?}");
        }
    }

    #[test]
    fn a_host_list_with_no_good_item_refuses_the_route() {
        for value in ["", " ", ",", " , ,", "a b", "a;b, c#d"] {
            let errs = errors(&[(HOSTS, value), (PORT, "80")]);
            assert!(!errs.is_empty(), "{value:?}");
            for e in &errs {
                assert!(
                    matches!(e, LabelError::Invalid { label, .. } if label == HOSTS),
                    "{value:?}: {e}"
                );
            }
        }
        assert_eq!(errors(&[(HOSTS, "a;b, c#d"), (PORT, "80")]).len(), 2);
        let (_, errs) = host_list(" , ");
        assert_eq!(
            errs,
            ["service web: label com.docker.lb.hosts=\" , \": empty: list at least one host"]
        );
    }

    #[test]
    fn a_host_with_a_port_is_refused_because_routing_strips_ports() {
        let (hosts, errs) = host_list("a.example,b.example:8080");
        assert_eq!(hosts, ["a.example"]);
        assert_eq!(
            errs,
            [
                "service web: label com.docker.lb.hosts=\"a.example,b.example:8080\": host \
              \"b.example:8080\" is left out: it has a port: routing matches the Host header \
              with its port stripped, write the host alone"
            ]
        );
    }

    #[test]
    fn default_backend_adds_the_catch_all_key_to_the_hosts_in_either_mode() {
        for mode in ["default", "vip"] {
            let p = parse(&service(&[
                (HOSTS, "b.example,a.example"),
                (PORT, "80"),
                (BACKEND_MODE, mode),
                (DEFAULT_BACKEND, "true"),
            ]))
            .unwrap();
            assert_eq!(p.warnings, vec![]);
            let hosts: Vec<String> = p
                .route
                .expect("route")
                .hosts
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(hosts, ["-default-", "a.example", "b.example"], "{mode}");
        }
        let off = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (DEFAULT_BACKEND, "false"),
        ]))
        .unwrap();
        assert_eq!(off.route.expect("route").hosts, hosts(&["a.example"]));
        let bad = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (DEFAULT_BACKEND, "yes;show info"),
        ]))
        .unwrap();
        let errors = bad.route.expect_err("refused");
        assert!(
            matches!(errors.as_slice(), [LabelError::Invalid { label, .. }] if label == DEFAULT_BACKEND),
            "{errors:?}"
        );
    }

    #[test]
    fn more_than_ten_thousand_hosts_on_one_service_are_refused_as_one_error() {
        let many: Vec<String> = (0..10_001).map(|n| format!("h{n}.example")).collect();
        let errs = errors(&[(HOSTS, &many.join(",")), (PORT, "80")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0]
                .to_string()
                .contains("10001 hosts: at most 10000 per service"),
            "{}",
            errs[0]
        );
        let fine: Vec<String> = (0..HOSTS_MAX).map(|n| format!("h{n}.example")).collect();
        assert_eq!(
            route(&[(HOSTS, &fine.join(",")), (PORT, "80")])
                .unwrap()
                .hosts
                .len(),
            HOSTS_MAX
        );
    }
}
