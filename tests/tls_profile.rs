//! `--tls-profile` against a real HAProxy, checked with a real scanner: sslscan (Debian's
//! package, installed by scripts/setup.sh) lists the protocols and suites the HTTPS bind
//! accepts, and they must be those of Mozilla's configuration the profile names.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use support::Haproxy;
use swarm_lb::haproxy::tls_profile::TlsProfile;
use swarm_lb::haproxy::ProxyState;

const PROTOCOLS: [&str; 4] = ["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/// What sslscan saw: enabled protocols, and (protocol, suite) pairs accepted.
#[derive(Debug, Default)]
struct Scan {
    enabled: BTreeSet<String>,
    accepted: BTreeSet<(String, String)>,
}

fn scan(port: u16) -> Scan {
    swarm_lb_testkit::tls::require_tools(&["sslscan"], "the TLS profile tests");
    let out = Command::new("sslscan")
        .args([
            "--no-colour",
            "--no-check-certificate",
            "--no-renegotiation",
        ])
        .args([
            "--no-heartbleed",
            "--no-compression",
            "--no-fallback",
            "--no-groups",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .expect("run sslscan");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Scan::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [proto, "enabled"] if PROTOCOLS.contains(proto) => {
                found.enabled.insert((*proto).to_owned());
            }
            ["Accepted" | "Preferred", proto, _bits, "bits", suite, ..] => {
                found
                    .accepted
                    .insert(((*proto).to_owned(), (*suite).to_owned()));
            }
            _ => {}
        }
    }
    assert!(
        !found.enabled.is_empty(),
        "sslscan saw no protocol:\n{text}"
    );
    found
}

/// The scan of a HAProxy on `profile` (`None`: the default, no flag) matches the profile.
async fn check(profile: Option<TlsProfile>) -> Scan {
    let haproxy = match profile {
        Some(p) => Haproxy::start_https_profile(&ProxyState::default(), p).await,
        None => Haproxy::start_https(&ProxyState::default()).await,
    };
    let (port, _) = haproxy.https.as_ref().expect("HTTPS on");
    let port = *port;
    let found = tokio::task::spawn_blocking(move || scan(port))
        .await
        .expect("scan");
    let profile = profile.unwrap_or_default();
    let min = PROTOCOLS
        .iter()
        .position(|p| *p == profile.min_version())
        .expect("a TLS version");
    let want: BTreeSet<String> = PROTOCOLS[min..].iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(found.enabled, want, "{profile}: protocols");
    for (proto, suite) in &found.accepted {
        let allowed = match proto.as_str() {
            "TLSv1.3" => profile.ciphersuites().contains(&suite.as_str()),
            _ => profile.ciphers().contains(&suite.as_str()),
        };
        assert!(allowed, "{profile}: {proto} {suite} is not in the profile");
    }
    for proto in &want {
        assert!(
            found.accepted.iter().any(|(p, _)| p == proto),
            "{profile}: no suite accepted on {proto}: {found:?}"
        );
    }
    drop(haproxy);
    found
}

#[tokio::test]
async fn the_default_profile_is_intermediate_without_the_cbc_suites_tls_1_2_accepted_before() {
    let found = check(None).await;
    // The four suites the issue measured on the HTTPS bind before profiles existed.
    for cbc in [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-ECDSA-AES256-SHA384",
    ] {
        assert!(
            !found
                .accepted
                .contains(&("TLSv1.2".to_owned(), cbc.to_owned())),
            "{cbc}: {found:?}"
        );
    }
}

#[tokio::test]
async fn modern_accepts_tls_1_3_only() {
    check(Some(TlsProfile::Modern)).await;
}

#[tokio::test]
async fn old_accepts_tls_1_0_and_its_cbc_suites_too() {
    let found = check(Some(TlsProfile::Old)).await;
    assert!(
        found
            .accepted
            .iter()
            .any(|(p, s)| p == "TLSv1.2" && s.ends_with("-SHA")),
        "{found:?}"
    );
}
