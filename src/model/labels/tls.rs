//! TLS: `ssl_cert`/`ssl_key`, `ssl_only` and `ssl_passthrough` at the edge, `ssl_backend` and
//! `ssl_backend_tls_verify` to the tasks. A problem with them leaves that part out; the
//! service keeps its HTTP routing.

use std::collections::BTreeMap;

use super::keys::{
    SECRET_NAME_MAX, SSL_BACKEND, SSL_BACKEND_TLS_VERIFY, SSL_CERT, SSL_KEY, SSL_ONLY,
    SSL_PASSTHROUGH,
};
use super::BackendTls;
use super::{check_chars, parse_bool, LabelError, Reader};
use crate::model::cert::CertProblem;
use crate::model::Reason;

/// What the TLS labels ask of the edge. Problems with them are left-out errors: the service
/// keeps its HTTP routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTls {
    /// `ssl_cert` + `ssl_key`: terminate HTTPS for the service's hosts with this pair (boxed:
    /// most routes have none, and `Route` stays small).
    pub cert: Option<Box<CertSecrets>>,
    /// `ssl_only=true`: plain HTTP for the service's hosts is redirected to HTTPS.
    pub only: bool,
    /// `ssl_passthrough=true`: TLS for the service's hosts goes to the tasks untouched,
    /// routed by SNI.
    pub passthrough: bool,
    /// `ssl_acme=true`: the hosts a certificate is ordered for from the ACME CA (boxed like
    /// `cert`); `model::desired` drops it, with the error, when no CA is configured.
    pub acme: Option<Box<super::acme::AcmeHosts>>,
}

/// The Docker secrets (names) that hold a service's certificate chain and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertSecrets {
    pub cert: String,
    pub key: String,
}

/// A Docker secret name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most [`SECRET_NAME_MAX`]
/// characters: the engine's own rule).
pub fn parse_secret_name(service: &str, label: &str, value: &str) -> Result<String, LabelError> {
    let ok = value.len() <= SECRET_NAME_MAX
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(LabelError::invalid(
            service,
            label,
            value,
            Reason::NotASecretName,
        ))
    }
}

/// The edge TLS labels. Every problem goes to `left_out` and leaves that part out; the
/// service's HTTP routing stands. `redirects`: the service has `com.docker.lb.redirects`,
/// which Interlock documents as not combining with passthrough.
pub(super) fn parse_tls(
    service: &str,
    labels: &BTreeMap<String, String>,
    redirects: bool,
    left_out: &mut Vec<LabelError>,
) -> RouteTls {
    let read = Reader { service, labels };
    let flag = |label: &str, left_out: &mut Vec<LabelError>| {
        read.optional(label, left_out, |s, v| parse_bool(s, label, v))
            .flatten()
            .unwrap_or(false)
    };
    let only = flag(SSL_ONLY, left_out);
    let mut passthrough = flag(SSL_PASSTHROUGH, left_out);
    let cert = read
        .optional(SSL_CERT, left_out, |s, v| parse_secret_name(s, SSL_CERT, v))
        .flatten();
    let key = read
        .optional(SSL_KEY, left_out, |s, v| parse_secret_name(s, SSL_KEY, v))
        .flatten();
    let mut cert = match (cert, key, labels.get(SSL_CERT), labels.get(SSL_KEY)) {
        (Some(cert), Some(key), _, _) => Some(Box::new(CertSecrets { cert, key })),
        // One of the pair is set but bad: its error is already in `left_out`.
        (_, _, Some(_), Some(_)) | (None, None, _, _) => None,
        (Some(_), None, _, None) => {
            left_out.push(missing_pair(service, SSL_KEY, SSL_CERT));
            None
        }
        (None, Some(_), None, _) => {
            left_out.push(missing_pair(service, SSL_CERT, SSL_KEY));
            None
        }
        _ => None,
    };
    if passthrough && redirects {
        left_out.push(LabelError::invalid(
            service,
            SSL_PASSTHROUGH,
            "true",
            Reason::PassthroughWithRedirects,
        ));
        passthrough = false;
    }
    if passthrough && cert.is_some() {
        if let Some(value) = labels.get(SSL_CERT) {
            left_out.push(LabelError::invalid(
                service,
                SSL_CERT,
                value,
                Reason::PassthroughWithCertificate,
            ));
        }
        cert = None;
    }
    RouteTls {
        cert,
        only,
        passthrough,
        acme: None,
    }
}

fn missing_pair(service: &str, absent: &'static str, present: &'static str) -> LabelError {
    LabelError::Service {
        service: service.to_owned(),
        reason: Box::new(Reason::HalfCertPair { present, absent }),
    }
}

/// `ssl_backend` and `ssl_backend_tls_verify`; problems go to `left_out` (plain HTTP to the
/// tasks stands). Verification defaults to `required`, as in Interlock.
pub(super) fn parse_backend_tls(
    service: &str,
    labels: &BTreeMap<String, String>,
    left_out: &mut Vec<LabelError>,
) -> Option<BackendTls> {
    let read = Reader { service, labels };
    let on = read
        .optional(SSL_BACKEND, left_out, |s, v| parse_bool(s, SSL_BACKEND, v))
        .flatten()
        .unwrap_or(false);
    let verify = read
        .optional(SSL_BACKEND_TLS_VERIFY, left_out, |s, v| {
            check_chars(s, SSL_BACKEND_TLS_VERIFY, v)?;
            match v {
                "none" => Ok(false),
                "required" => Ok(true),
                _ => Err(LabelError::invalid(
                    s,
                    SSL_BACKEND_TLS_VERIFY,
                    v,
                    Reason::NotAVerifyMode,
                )),
            }
        })
        .flatten();
    match verify {
        // A bad verify value must not turn verification off.
        None if labels.contains_key(SSL_BACKEND_TLS_VERIFY) && on => None,
        _ if !on => None,
        verify => Some(BackendTls {
            verify: verify.unwrap_or(true),
        }),
    }
}

impl CertProblem {
    /// The label error for `service` whose secrets `secrets` hold this problem: key problems
    /// name `ssl_key`, the others `ssl_cert`; the value shown is the secret's name. (Here, not
    /// in `cert.rs`: the certificate checks know nothing of labels.)
    pub fn label_error(&self, service: &str, secrets: &CertSecrets) -> LabelError {
        let (label, secret) = match self {
            Self::NoKey | Self::EncryptedKey | Self::BadKey { .. } | Self::KeyMismatch => {
                (SSL_KEY, &secrets.key)
            }
            _ => (SSL_CERT, &secrets.cert),
        };
        LabelError::invalid(service, label, secret, Reason::Certificate(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::testing::*;
    use crate::model::labels::*;

    fn tls_of(labels: &[(&str, &str)]) -> (RouteTls, Option<BackendTls>, Vec<String>) {
        let mut all = vec![(HOSTS, "a.example"), (PORT, "80")];
        all.extend_from_slice(labels);
        let p = parse(&service(&all)).unwrap();
        let left_out = p.left_out.iter().map(ToString::to_string).collect();
        assert_eq!(p.warnings, vec![], "TLS labels are known");
        let r = p.route.expect("a TLS problem never refuses the HTTP route");
        (r.tls, r.options.backend_tls, left_out)
    }

    #[test]
    fn a_certificate_and_key_pair_names_two_secrets() {
        let (tls, _, errors) = tls_of(&[(SSL_CERT, "web.crt"), (SSL_KEY, "web-key_2")]);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            tls.cert,
            Some(Box::new(CertSecrets {
                cert: "web.crt".into(),
                key: "web-key_2".into()
            }))
        );
    }

    #[test]
    fn half_a_pair_or_a_bad_secret_name_is_left_out_naming_service_and_label() {
        let (tls, _, errors) = tls_of(&[(SSL_CERT, "web.crt")]);
        assert_eq!(tls.cert, None);
        assert_eq!(
            errors,
            [
                "service web: label com.docker.lb.ssl_cert needs com.docker.lb.ssl_key too: HTTPS \
              is not terminated for it"
            ]
        );
        // Status and metrics name the label that is missing, not `-`.
        let p = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (SSL_CERT, "c"),
        ]))
        .unwrap();
        assert_eq!(p.left_out[0].label(), Some(SSL_KEY));
        let (tls, _, errors) = tls_of(&[(SSL_CERT, "-bad"), (SSL_KEY, "k")]);
        assert_eq!(tls.cert, None);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "service web: label com.docker.lb.ssl_cert=\"-bad\": not a Docker secret name"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn ssl_only_and_passthrough_are_booleans() {
        let (tls, _, errors) = tls_of(&[(SSL_ONLY, "true"), (SSL_PASSTHROUGH, "true")]);
        assert_eq!(errors, Vec::<String>::new());
        assert!(tls.only && tls.passthrough);
        let (tls, _, errors) = tls_of(&[(SSL_ONLY, "yes")]);
        assert!(!tls.only);
        assert_eq!(
            errors,
            ["service web: label com.docker.lb.ssl_only=\"yes\": accepted values are true and false"]
        );
    }

    #[test]
    fn passthrough_with_redirects_is_refused_naming_service_and_label_and_the_redirects_stand() {
        let (tls, _, errors) = tls_of(&[
            (SSL_PASSTHROUGH, "true"),
            (REDIRECTS, "http://a.example,https://a.example"),
        ]);
        assert!(!tls.passthrough);
        assert_eq!(
            errors,
            [
                "service web: label com.docker.lb.ssl_passthrough=\"true\": does not combine with \
              com.docker.lb.redirects (Interlock's rule): passthrough is left out"
            ]
        );
    }

    #[test]
    fn passthrough_with_a_certificate_leaves_the_certificate_out() {
        let (tls, _, errors) =
            tls_of(&[(SSL_PASSTHROUGH, "true"), (SSL_CERT, "c"), (SSL_KEY, "k")]);
        assert!(tls.passthrough);
        assert_eq!(tls.cert, None);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("com.docker.lb.ssl_cert"), "{errors:?}");
    }

    #[test]
    fn ssl_backend_verifies_by_default_and_not_with_none() {
        assert_eq!(
            tls_of(&[(SSL_BACKEND, "true")]).1,
            Some(BackendTls { verify: true })
        );
        assert_eq!(
            tls_of(&[(SSL_BACKEND, "true"), (SSL_BACKEND_TLS_VERIFY, "none")]).1,
            Some(BackendTls { verify: false })
        );
        assert_eq!(tls_of(&[(SSL_BACKEND_TLS_VERIFY, "none")]).1, None);
        let (_, backend, errors) =
            tls_of(&[(SSL_BACKEND, "true"), (SSL_BACKEND_TLS_VERIFY, "optional")]);
        assert_eq!(
            backend, None,
            "a bad verify value never turns verification off"
        );
        assert_eq!(
            errors,
            [
                "service web: label com.docker.lb.ssl_backend_tls_verify=\"optional\": accepted \
              values are none and required"
            ]
        );
    }

    #[test]
    fn ssl_backend_works_in_vip_mode_too() {
        let (_, backend, errors) = tls_of(&[(BACKEND_MODE, "vip"), (SSL_BACKEND, "true")]);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(backend, Some(BackendTls { verify: true }));
    }

    #[test]
    fn a_problem_becomes_an_error_naming_service_label_secret_and_reason() {
        let secrets = CertSecrets {
            cert: "web-crt".into(),
            key: "web-key".into(),
        };
        assert_eq!(
            CertProblem::KeyMismatch
                .label_error("web", &secrets)
                .to_string(),
            "service web: label com.docker.lb.ssl_key=\"web-key\": the key is not the \
             certificate's key (their public keys differ)"
        );
        assert!(CertProblem::Expired { not_after: 1 }
            .label_error("web", &secrets)
            .to_string()
            .starts_with(
                "service web: label com.docker.lb.ssl_cert=\"web-crt\": the certificate expired"
            ));
    }
}
