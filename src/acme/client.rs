//! One ACME order, start to finish, through instant-acme (RFC 8555 §7.1 gives the flow):
//! account (§7.3, with external account binding §7.3.4 when configured), `newOrder` (§7.4),
//! one HTTP-01 challenge per authorization (§7.5, §8.3) published through [`Challenges`],
//! the ready signal (§7.5.1), polling until `ready`, finalize with our own CSR (§7.4), and the
//! chain download (§7.4.2). The CA's refusals come back as [`AcmeError`]s carrying its problem
//! document (§6.7: type and detail); nothing of a key, token or the MAC key is in any error or
//! log line.
//!
//! Who may order (the Swarm lease), where the account and certificates are stored (Docker
//! secrets) and when to renew are the caller's: `docs/acme.md`.

use std::future::Future;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tracing::{debug, info, warn};

use super::schedule::Window;
use super::settings::AcmeSettings;
use crate::haproxy::acme::{ChallengeError, KeyAuthorization, Token};
use crate::haproxy::command::{Pem, PemError};
use crate::model::cert::{CertInfo, CertProblem};
use crate::model::Host;

/// An error from a [`Challenges`] implementation (publishing or withdrawing an answer).
pub type ChallengesError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an order (or the account) failed. `is_transient` tells retry from report.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The directory, the account or a request failed; `source` holds the CA's problem
    /// document when it sent one.
    #[error("ACME {step} at {directory}: {source}")]
    Protocol {
        step: &'static str,
        directory: String,
        #[source]
        source: instant_acme::Error,
    },
    /// An authorization ended other than valid (the CA could not validate the challenge).
    #[error("ACME authorization for {host} is {status}: {problem}")]
    Authorization {
        host: String,
        status: String,
        problem: String,
    },
    /// The CA offered no HTTP-01 challenge for a name (RFC 8555 §7.5 leaves the choice to it).
    #[error("the ACME CA offers no http-01 challenge for {host}")]
    NoHttp01 { host: String },
    /// The CA sent a token or key authorization outside RFC 8555's syntax.
    #[error("the ACME CA's challenge for {host} cannot be served: {source}")]
    BadChallenge {
        host: String,
        #[source]
        source: ChallengeError,
    },
    /// The order did not become ready (a challenge failed): the CA's problem, if any.
    #[error("ACME order for {hosts} is {status}: {problem}")]
    OrderNotReady {
        hosts: String,
        status: String,
        problem: String,
    },
    #[error("publishing the HTTP-01 answers: {source}")]
    Challenges {
        #[source]
        source: ChallengesError,
    },
    #[error("generating the certificate key or request: {source}")]
    Csr {
        #[source]
        source: rcgen::Error,
    },
    /// The chain the CA returned is not PEM HAProxy can load.
    #[error("the certificate chain from the ACME CA is not usable PEM: {source}")]
    Chain {
        #[source]
        source: PemError,
    },
}

impl AcmeError {
    /// Worth retrying later (with backoff): the network, the CA's own trouble, a rate limit
    /// (RFC 8555 §6.6), a failed validation (`unauthorized`, `connection`, `dns`: routing or
    /// DNS may be fixed). A CA that refuses the names or the account for good is not.
    pub fn is_transient(&self) -> bool {
        match self {
            AcmeError::Protocol { source, .. } => match source {
                instant_acme::Error::Api(problem) => !matches!(
                    problem.r#type.as_deref(),
                    Some(
                        "urn:ietf:params:acme:error:rejectedIdentifier"
                            | "urn:ietf:params:acme:error:unsupportedIdentifier"
                            | "urn:ietf:params:acme:error:externalAccountRequired"
                    )
                ),
                _ => true,
            },
            AcmeError::Authorization { .. }
            | AcmeError::OrderNotReady { .. }
            | AcmeError::Challenges { .. } => true,
            AcmeError::NoHttp01 { .. }
            | AcmeError::BadChallenge { .. }
            | AcmeError::Csr { .. }
            | AcmeError::Chain { .. } => false,
        }
    }
}

impl AcmeError {
    /// The CA refused for its rate limits (RFC 8555 §6.6, `rateLimited`): the retry waits
    /// longer ([`super::schedule::retry_at`]).
    pub fn is_rate_limited(&self) -> bool {
        matches!(
            self,
            AcmeError::Protocol {
                source: instant_acme::Error::Api(problem),
                ..
            } if problem.r#type.as_deref() == Some(RATE_LIMITED)
        )
    }
}

const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
/// RFC 9773 §7.4: the certificate named in `replaces` was already replaced.
const ALREADY_REPLACED: &str = "urn:ietf:params:acme:error:alreadyReplaced";

/// The CA's renewal information for one certificate (RFC 9773 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalAdvice {
    pub window: Window,
    /// The CA's `Retry-After`, seconds from now: when to ask again.
    pub retry_after_s: i64,
    /// A page explaining the window, when the CA gives one (e.g. an incident).
    pub explanation_url: Option<String>,
}

/// A certificate's ARI identifier (RFC 9773 §4.1): the leaf's Authority Key Identifier
/// `keyIdentifier` and its DER serial (content octets, leading zero kept), from the first
/// certificate of `chain` (PEM). Public data only.
pub fn certificate_id(chain: &str) -> Result<CertificateIdentifier<'static>, CertProblem> {
    use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let leaf = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")
        .ok_or(CertProblem::NoCertificate)?;
    let (_, cert) = X509Certificate::from_der(&leaf.contents)
        .map_err(|e| CertProblem::BadCertificate(e.to_string()))?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .ok_or_else(|| {
            CertProblem::BadCertificate("no Authority Key Identifier keyIdentifier".into())
        })?;
    // What `CertificateIdentifier::new` does, without naming rustls-pki-types' `Der`.
    Ok(CertificateIdentifier {
        authority_key_identifier: BASE64_URL_SAFE_NO_PAD.encode(aki.0).into(),
        serial: BASE64_URL_SAFE_NO_PAD
            .encode(cert.tbs_certificate.raw_serial())
            .into(),
    })
}

/// Where HTTP-01 answers go so the CA finds them (every edge's HAProxy, through the
/// challenge map). `publish` returns once the answer is served; `withdraw` removes it.
pub trait Challenges {
    fn publish(
        &mut self,
        token: &Token,
        key_authorization: &KeyAuthorization,
    ) -> impl Future<Output = Result<(), ChallengesError>> + Send;
    fn withdraw(
        &mut self,
        token: &Token,
    ) -> impl Future<Output = Result<(), ChallengesError>> + Send;
}

/// The ACME account's credentials (its private key, id and directory), to be stored as a
/// Docker secret. `Debug` shows nothing of them.
pub struct Credentials(AccountCredentials);

impl Credentials {
    /// The JSON instant-acme reads back ([`AcmeClient::restore`]). Holds the account key:
    /// only for a secret or a 0600 file.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.0)
    }
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text).map(Self)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// A certificate the CA issued: the chain as PEM and the key it certifies.
pub struct Issued {
    /// Leaf first, then the intermediates (RFC 8555 §7.4.2: `application/pem-certificate-chain`).
    pub chain: String,
    key_pem: String,
}

impl Issued {
    /// Chain and key as one PEM payload, as `set ssl cert` and the certificate files take it.
    pub fn pem(&self) -> Result<Pem, PemError> {
        Pem::new(&format!("{}\n{}", self.chain, self.key_pem))
    }

    /// The checks a labelled pair gets ([`crate::model::cert::check`]): the key is the
    /// leaf's, it is valid at `now` (unix seconds) and names every one of `hosts`.
    pub fn check(&self, hosts: &[Host], now: i64) -> Result<CertInfo, CertProblem> {
        crate::model::cert::check(&self.chain, &self.key_pem, hosts, now)
    }

    /// The leaf's validity, `(not_before, not_after)` in unix seconds: what
    /// [`super::schedule::renew_at`] takes.
    pub fn validity(&self) -> Result<(i64, i64), CertProblem> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let leaf = x509_parser::pem::Pem::iter_from_buffer(self.chain.as_bytes())
            .filter_map(Result::ok)
            .find(|p| p.label == "CERTIFICATE")
            .ok_or(CertProblem::NoCertificate)?;
        let (_, cert) = X509Certificate::from_der(&leaf.contents)
            .map_err(|e| CertProblem::BadCertificate(e.to_string()))?;
        let validity = cert.validity();
        Ok((
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        ))
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Issued(chain {} bytes, key <redacted>)",
            self.chain.len()
        )
    }
}

/// How long an order may wait for the CA: validation, then issuance.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Longest wait for the order to turn `ready` after the challenges are answered.
    pub ready: Duration,
    /// Longest wait for the certificate after finalize.
    pub certificate: Duration,
}

impl Default for Patience {
    /// Let's Encrypt validates within seconds; 90 s covers a slow CA or a DNS delay.
    fn default() -> Self {
        Self {
            ready: Duration::from_secs(90),
            certificate: Duration::from_secs(90),
        }
    }
}

/// An ACME account on one directory.
pub struct AcmeClient {
    account: Account,
    directory: String,
}

impl AcmeClient {
    fn builder(settings: &AcmeSettings) -> Result<instant_acme::AccountBuilder, AcmeError> {
        let built = match &settings.ca_bundle {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        };
        built.map_err(|source| AcmeError::Protocol {
            step: "client",
            directory: settings.directory.clone(),
            source,
        })
    }

    /// Creates an account (RFC 8555 §7.3; agrees to the CA's terms, as every ACME client
    /// must to order), bound to the external account when `settings` has one (§7.3.4).
    pub async fn create(settings: &AcmeSettings) -> Result<(Self, Credentials), AcmeError> {
        let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
        let eab = settings
            .eab
            .as_ref()
            .map(|eab| ExternalAccountKey::new(eab.kid.clone(), eab.hmac.expose()));
        let (account, credentials) = Self::builder(settings)?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                settings.directory.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(|source| AcmeError::Protocol {
                step: "newAccount",
                directory: settings.directory.clone(),
                source,
            })?;
        info!(directory = %settings.directory, "ACME account created");
        Ok((
            Self {
                account,
                directory: settings.directory.clone(),
            },
            Credentials(credentials),
        ))
    }

    /// The account `credentials` hold (no request beyond reading the directory).
    pub async fn restore(
        settings: &AcmeSettings,
        credentials: Credentials,
    ) -> Result<Self, AcmeError> {
        let account = Self::builder(settings)?
            .from_credentials(credentials.0)
            .await
            .map_err(|source| AcmeError::Protocol {
                step: "directory",
                directory: settings.directory.clone(),
                source,
            })?;
        Ok(Self {
            account,
            directory: settings.directory.clone(),
        })
    }

    /// The CA's renewal information for the certificate `id` names (RFC 9773 §4.2; a plain
    /// GET, no account signature). `Ok(None)`: the CA's directory has no `renewalInfo`.
    pub async fn renewal_info(
        &self,
        id: &CertificateIdentifier<'_>,
    ) -> Result<Option<RenewalAdvice>, AcmeError> {
        match self.account.renewal_info(id).await {
            Ok((info, retry_after)) => Ok(Some(RenewalAdvice {
                window: Window {
                    start: info.suggested_window.start.unix_timestamp(),
                    end: info.suggested_window.end.unix_timestamp(),
                },
                retry_after_s: i64::try_from(retry_after.as_secs()).unwrap_or(i64::MAX),
                explanation_url: info.explanation_url,
            })),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(self.protocol("renewalInfo")(e)),
        }
    }

    fn protocol(&self, step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError + '_ {
        move |mut source| {
            if let instant_acme::Error::Api(problem) = &mut source {
                redact_problem(problem);
            }
            AcmeError::Protocol {
                step,
                directory: self.directory.clone(),
                source,
            }
        }
    }

    /// Orders one certificate for `hosts` (each a DNS name [`crate::model::labels::acme`]
    /// accepted), answering HTTP-01 through `answers`; every answer published is withdrawn
    /// again, whatever the outcome. The key is a fresh ECDSA P-256 key (rcgen's default), never
    /// the account's (RFC 8555 §11.1).
    pub async fn order(
        &self,
        hosts: &[Host],
        answers: &mut impl Challenges,
        patience: Patience,
    ) -> Result<Issued, AcmeError> {
        self.order_replacing(hosts, answers, patience, None).await
    }

    /// [`Self::order`], naming the certificate it renews (`replaces`, RFC 9773 §5) when the CA
    /// offers renewal information: the CA may then exempt it from rate limits. Should the CA
    /// answer that the certificate was already replaced, the order is placed without it.
    pub async fn order_replacing(
        &self,
        hosts: &[Host],
        answers: &mut impl Challenges,
        patience: Patience,
        replaces: Option<&CertificateIdentifier<'_>>,
    ) -> Result<Issued, AcmeError> {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let new_order = || NewOrder::new(&identifiers);
        let placed = match replaces {
            Some(id) => {
                let with = self
                    .account
                    .new_order(&new_order().replaces(id.clone()))
                    .await;
                match with {
                    Err(instant_acme::Error::Api(p))
                        if p.r#type.as_deref() == Some(ALREADY_REPLACED) =>
                    {
                        info!(
                            hosts = names.len(),
                            "the CA says the certificate was already replaced; ordering without `replaces`"
                        );
                        self.account.new_order(&new_order()).await
                    }
                    other => other,
                }
            }
            None => self.account.new_order(&new_order()).await,
        };
        let mut order = placed.map_err(self.protocol("newOrder"))?;
        info!(hosts = names.len(), "ACME order placed");
        let mut published: Vec<Token> = Vec::new();
        let answered = self.answer(&mut order, answers, &mut published).await;
        let result = match answered {
            Ok(()) => self.finish(&mut order, &names, patience).await,
            Err(e) => Err(e),
        };
        for token in &published {
            if let Err(error) = answers.withdraw(token).await {
                warn!(%error, "withdrawing an HTTP-01 answer failed");
            }
        }
        match &result {
            Ok(issued) => info!(
                hosts = names.len(),
                chain_bytes = issued.chain.len(),
                "ACME certificate issued"
            ),
            Err(error) => warn!(hosts = names.len(), %error, "ACME order failed"),
        }
        result
    }

    /// Publishes the HTTP-01 answer of every pending authorization and tells the CA it is
    /// ready (RFC 8555 §7.5.1); `published` collects what must be withdrawn.
    async fn answer(
        &self,
        order: &mut instant_acme::Order,
        answers: &mut impl Challenges,
        published: &mut Vec<Token>,
    ) -> Result<(), AcmeError> {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(self.protocol("authorization"))?;
            let host = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                // Validated earlier for this account (CAs reuse authorizations, §7.1.4).
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(AcmeError::Authorization {
                        host,
                        status: format!("{status:?}").to_lowercase(),
                        problem: "the CA will not validate it again in this order".into(),
                    })
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::NoHttp01 { host: host.clone() })?;
            let bad = |source| AcmeError::BadChallenge {
                host: host.clone(),
                source,
            };
            let token = Token::new(&challenge.token).map_err(bad)?;
            let key_authorization =
                KeyAuthorization::new(&token, challenge.key_authorization().as_str())
                    .map_err(bad)?;
            answers
                .publish(&token, &key_authorization)
                .await
                .map_err(|source| AcmeError::Challenges { source })?;
            published.push(token);
            challenge
                .set_ready()
                .await
                .map_err(self.protocol("challenge"))?;
            debug!(host = %host, "HTTP-01 answer published, challenge ready");
        }
        Ok(())
    }

    /// Waits for `ready`, finalizes with a fresh key's CSR, downloads the chain.
    async fn finish(
        &self,
        order: &mut instant_acme::Order,
        names: &[String],
        patience: Patience,
    ) -> Result<Issued, AcmeError> {
        let retry = |timeout| {
            RetryPolicy::new()
                .initial_delay(Duration::from_millis(250))
                .backoff(1.5)
                .timeout(timeout)
        };
        let status = order
            .poll_ready(&retry(patience.ready))
            .await
            .map_err(self.protocol("validation"))?;
        if status != OrderStatus::Ready {
            let problem = order.state().error.as_ref().map_or_else(
                || "no problem document".to_owned(),
                |p| redact_tokens(&p.to_string()),
            );
            return Err(AcmeError::OrderNotReady {
                hosts: names.join(","),
                status: format!("{status:?}").to_lowercase(),
                problem,
            });
        }
        let csr = |source| AcmeError::Csr { source };
        let key = rcgen::KeyPair::generate().map_err(csr)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(csr)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let request = params.serialize_request(&key).map_err(csr)?;
        order
            .finalize_csr(request.der())
            .await
            .map_err(self.protocol("finalize"))?;
        let chain = order
            .poll_certificate(&retry(patience.certificate))
            .await
            .map_err(self.protocol("certificate"))?;
        let issued = Issued {
            chain,
            key_pem: key.serialize_pem(),
        };
        // A chain HAProxy could not take is refused here, before anyone stores it.
        issued.pem().map_err(|source| AcmeError::Chain { source })?;
        Ok(issued)
    }
}

/// `text` with every challenge token after `acme-challenge/` replaced by `<token>`: CAs quote
/// the URL they fetched in their problem details (Pebble: `Non-200 status code from HTTP:
/// http://a.example/.well-known/acme-challenge/<token> returned 404`), and these texts reach
/// logs and status, where tokens never go.
pub fn redact_tokens(text: &str) -> String {
    const MARK: &str = "acme-challenge/";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let (head, tail) = rest.split_at(at + MARK.len());
        out.push_str(head);
        let token_len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        if token_len > 0 {
            out.push_str("<token>");
        }
        rest = &tail[token_len..];
    }
    out.push_str(rest);
    out
}

fn redact_problem(problem: &mut instant_acme::Problem) {
    if let Some(detail) = &mut problem.detail {
        *detail = redact_tokens(detail);
    }
    for sub in &mut problem.subproblems {
        if let Some(detail) = &mut sub.detail {
            *detail = redact_tokens(detail);
        }
    }
}

/// [`Challenges`] answered by one HAProxy through its challenge map: `add map` / `del map`
/// over the admin socket, no reload. (Every edge's map is fed through Swarm later:
/// `docs/acme.md`.)
pub struct HaproxyChallenges {
    admin: crate::haproxy::AdminClient,
    map: crate::haproxy::MapPath,
}

impl HaproxyChallenges {
    pub fn new(admin: crate::haproxy::AdminClient, map: crate::haproxy::MapPath) -> Self {
        Self { admin, map }
    }

    async fn run(&mut self, cmd: crate::haproxy::Command) -> Result<(), ChallengesError> {
        let kind = cmd.kind();
        let replies = self.admin.execute(std::slice::from_ref(&cmd)).await?;
        match replies.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err(refused)) => Err(format!("{kind}: {refused}").into()),
            None => Err(format!("{kind}: no reply").into()),
        }
    }
}

impl Challenges for HaproxyChallenges {
    async fn publish(
        &mut self,
        token: &Token,
        key_authorization: &KeyAuthorization,
    ) -> Result<(), ChallengesError> {
        let cmd = crate::haproxy::acme::put_token(&self.map, token, key_authorization);
        self.run(cmd).await
    }

    async fn withdraw(&mut self, token: &Token) -> Result<(), ChallengesError> {
        let cmd = crate::haproxy::acme::take_token(&self.map, token);
        self.run(cmd).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_and_credentials_never_show_their_keys_in_debug() {
        let issued = Issued {
            chain: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----".into(),
        };
        let shown = format!("{issued:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("PRIVATE"),
            "{shown}"
        );
        let pem = issued.pem().expect("pem");
        assert!(pem.as_str().contains("BEGIN CERTIFICATE"));
        assert!(pem.as_str().contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn tokens_quoted_in_a_cas_problem_are_redacted() {
        let detail = "Non-200 status code from HTTP: http://a.example/.well-known/acme-challenge/zj31Vm1VR0VXpHz-_9 returned 404; also acme-challenge/X2";
        assert_eq!(
            redact_tokens(detail),
            "Non-200 status code from HTTP: http://a.example/.well-known/acme-challenge/<token> returned 404; also acme-challenge/<token>"
        );
        assert_eq!(redact_tokens("no token here"), "no token here");
        assert_eq!(redact_tokens("acme-challenge/"), "acme-challenge/");
    }

    #[test]
    fn a_certificates_ari_identifier_is_its_authority_key_id_and_der_serial_base64url() {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, IsCa, Issuer, KeyIdMethod,
            KeyPair, SerialNumber,
        };
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_identifier_method = KeyIdMethod::PreSpecified(vec![0xC0, 0xFF, 0xEE]);
        let ca = Issuer::new(ca_params, KeyPair::generate().expect("ca key"));
        let leaf = |aki: bool| {
            let mut params = CertificateParams::new(["a.example".to_owned()]).expect("params");
            params.distinguished_name = DistinguishedName::new();
            // 0xCAFE is negative as a bare DER integer: the encoding keeps a leading zero.
            params.serial_number = Some(SerialNumber::from_slice(&[0xCA, 0xFE]));
            params.use_authority_key_identifier_extension = aki;
            let key = KeyPair::generate().expect("key");
            params.signed_by(&key, &ca).expect("leaf").pem()
        };
        let id = certificate_id(&leaf(true)).expect("id");
        // instant-acme's own test vector for the same certificate (and RFC 9773 §4.1's rule).
        assert_eq!(id.to_string(), "wP_u.AMr-");
        assert!(matches!(
            certificate_id(&leaf(false)),
            Err(CertProblem::BadCertificate(_))
        ));
        // RFC 9773 Appendix A's example certificate and its identifier (§4.1).
        let rfc = "-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----
";
        assert_eq!(
            certificate_id(rfc).expect("RFC 9773's example").to_string(),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        assert!(matches!(
            certificate_id("no pem"),
            Err(CertProblem::NoCertificate)
        ));
    }

    #[test]
    fn a_ca_refusing_the_name_is_permanent_and_a_rate_limit_is_transient() {
        let problem = |kind: &str| {
            let json = format!(r#"{{"type":"urn:ietf:params:acme:error:{kind}","detail":"d"}}"#);
            AcmeError::Protocol {
                step: "newOrder",
                directory: "https://ca.example/dir".into(),
                source: instant_acme::Error::Api(serde_json::from_str(&json).expect("problem")),
            }
        };
        assert!(!problem("rejectedIdentifier").is_transient());
        assert!(problem("rateLimited").is_transient());
        assert!(problem("rateLimited").is_rate_limited());
        assert!(!problem("serverInternal").is_rate_limited());
        assert!(!problem("unauthorized").is_rate_limited());
        assert!(
            problem("unauthorized").is_transient(),
            "a failed validation"
        );
        assert!(problem("serverInternal").is_transient());
        let e = problem("rejectedIdentifier").to_string();
        assert!(
            e.contains("rejectedIdentifier") && e.contains("newOrder"),
            "{e}"
        );
    }
}
