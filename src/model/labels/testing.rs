//! What the label tests of every family share.

use super::*;

/// A service's labels from `(key, value)` pairs.
pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn service(pairs: &[(&str, &str)]) -> Service {
    Service {
        id: "id-web".to_owned(),
        name: "web".to_owned(),
        labels: labels(pairs),
        networks: vec!["net1".to_owned()],
        vips: vec![],
    }
}

pub(super) fn route(labels: &[(&str, &str)]) -> Result<Route, Vec<LabelError>> {
    match parse(&service(labels))
        .expect("service has lb labels")
        .route
    {
        Verdict::Route(route) => Ok(*route),
        Verdict::Refused(errors) => Err(errors),
        Verdict::NoHosts => panic!("labels {labels:?} ask for no routing"),
    }
}

/// `Result`-like reading for the tests below.
impl Verdict {
    pub(super) fn is_ok(&self) -> bool {
        matches!(self, Verdict::Route(_))
    }
    pub(super) fn expect(self, what: &str) -> Route {
        match self {
            Verdict::Route(route) => *route,
            other => panic!("{what}: {other:?}"),
        }
    }
    pub(super) fn expect_err(self, what: &str) -> Vec<LabelError> {
        match self {
            Verdict::Refused(errors) => errors,
            other => panic!("{what}: {other:?}"),
        }
    }
    pub(super) fn unwrap_err(self) -> Vec<LabelError> {
        self.expect_err("refused")
    }
}

pub(super) fn errors(labels: &[(&str, &str)]) -> Vec<LabelError> {
    route(labels).expect_err("labels should be refused")
}

pub(super) fn hosts(list: &[&str]) -> Vec<Host> {
    list.iter().map(|h| Host::parse(h).unwrap()).collect()
}
