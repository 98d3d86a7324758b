//! The pass's side of automatic certificates (`com.docker.lb.ssl_acme`, `docs/acme.md`):
//!
//! - [`AcmeCerts::settle`] tells the worker ([`crate::acme::worker`]) which name sets the
//!   labels want, and turns the certificate Swarm holds for each into a [`WantedCert`], so
//!   that it is delivered and served exactly as an `ssl_cert`/`ssl_key` pair (SNI,
//!   `ssl_only`, h2, `set ssl cert`, no reload); the account secret is asked of the copy job
//!   too;
//! - [`AcmeCerts::apply`] keeps HAProxy's challenge map equal to what is wanted: each ACME
//!   host marked (an unknown token on it is a 404, never routed) and every answer any edge
//!   published. `add map`/`del map` only, then the file written (a reload keeps it).

use std::collections::{BTreeMap, BTreeSet};

use tracing::{debug, info};

use crate::acme::store;
use crate::acme::worker::AcmeHandle;
use crate::haproxy::acme::{self as challenge, Token};
use crate::haproxy::render::Files;
use crate::haproxy::{AdminClient, ClientError, Command, MapPath};
use crate::model::labels::{CertSecrets, LabelError};
use crate::model::{Desired, Host, WantedCert};

/// What the challenge map should hold: its entries (key -> value), and what they are from.
struct Wanted {
    entries: BTreeMap<String, String>,
    hosts: Vec<Host>,
    answers: Vec<(Token, challenge::KeyAuthorization)>,
}

/// What the pass keeps between passes for ACME.
#[derive(Debug)]
pub struct AcmeCerts {
    handle: AcmeHandle,
    map: MapPath,
    files: Files,
    /// The challenge map as HAProxy holds it (key -> value), once read or written; `None`
    /// after a failure: the next pass reads it.
    applied: Option<BTreeMap<String, String>>,
}

/// Why the challenge map was not brought in step.
#[derive(Debug, thiserror::Error)]
pub enum AcmeMapError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("haproxy refused {kind} on the ACME challenge map: {reply}")]
    Refused { kind: &'static str, reply: String },
    #[error(transparent)]
    Files(#[from] crate::haproxy::render::FilesError),
}

impl AcmeCerts {
    /// `map`: the challenge map HAProxy loads ([`challenge::acme_map`]); `files`: where its
    /// file is written.
    pub fn new(handle: AcmeHandle, map: MapPath, files: Files) -> Self {
        Self {
            handle,
            map,
            files,
            applied: None,
        }
    }

    /// The worker's handle (the pass loop waits on its changes).
    pub fn handle(&self) -> &AcmeHandle {
        &self.handle
    }

    /// Wants the labels' name sets; each stored certificate becomes its service's
    /// [`WantedCert`]; the account secret joins the secrets to deliver.
    pub fn settle(&self, desired: &mut Desired, now: i64) {
        self.handle.want(desired.acme.values());
        let view = self.handle.view();
        for (backend, want) in &desired.acme {
            // The certificate for exactly these names, else (while one is ordered for names
            // just added) one for part of them, for those names.
            let (cert, hosts) = match view.serving(&store::digest(&want.hosts), now) {
                Some(cert) => (cert, want.hosts.clone()),
                None => match view.covering_part(&want.hosts, now) {
                    Some(cert) => (
                        cert,
                        want.hosts
                            .iter()
                            .filter(|h| cert.hosts.iter().any(|c| c == h.as_str()))
                            .cloned()
                            .collect(),
                    ),
                    None => continue,
                },
            };
            desired.certs.insert(
                backend.clone(),
                WantedCert {
                    service: want.service.clone(),
                    secrets: CertSecrets {
                        cert: cert.crt.clone(),
                        key: cert.key.clone(),
                    },
                    hosts,
                },
            );
        }
        desired.extra_secrets.extend(self.handle.account_secret());
    }

    /// The orders that failed, as label problems of their services.
    pub fn problems(&self) -> Vec<LabelError> {
        self.handle.problems()
    }

    /// What the challenge map should hold: every ACME host marked, every answer.
    fn wanted(&self, desired: &Desired) -> Wanted {
        let hosts: BTreeSet<&Host> = desired.acme.values().flat_map(|w| &w.hosts).collect();
        let hosts: Vec<Host> = hosts.into_iter().cloned().collect();
        let answers = self.handle.answers();
        let text = challenge::map_text(&hosts, &answers);
        let entries = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Wanted {
            entries,
            hosts,
            answers,
        }
    }

    /// Brings the challenge map in step with `desired` and the answers listed; the number
    /// of commands sent. Then tells the worker which answers HAProxy holds.
    ///
    /// Errors: the admin socket's, a refused edit, or the file not written; the next pass
    /// reads the map again.
    pub async fn apply(
        &mut self,
        admin: &mut AdminClient,
        desired: &Desired,
    ) -> Result<usize, AcmeMapError> {
        let result = self.apply_inner(admin, desired).await;
        if result.is_err() {
            self.applied = None;
        }
        result
    }

    async fn apply_inner(
        &mut self,
        admin: &mut AdminClient,
        desired: &Desired,
    ) -> Result<usize, AcmeMapError> {
        let Wanted {
            entries: wanted,
            hosts,
            answers,
        } = self.wanted(desired);
        let applied = match self.applied.take() {
            Some(applied) => applied,
            None => admin
                .map_entries(&self.map)
                .await?
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect(),
        };
        let mut cmds = Vec::new();
        for (key, value) in &applied {
            if wanted.get(key) != Some(value) {
                cmds.push(delete(&self.map, key, &hosts, &answers));
            }
        }
        for (key, value) in &wanted {
            if applied.get(key) != Some(value) {
                cmds.push(add(&self.map, key, &hosts, &answers));
            }
        }
        let cmds: Vec<Command> = cmds.into_iter().flatten().collect();
        if !cmds.is_empty() || !self.files.acme_map_path().exists() {
            let replies = admin.execute(&cmds).await?;
            for (cmd, reply) in cmds.iter().zip(replies) {
                if let Err(refused) = reply {
                    return Err(AcmeMapError::Refused {
                        kind: cmd.kind(),
                        reply: refused.to_string(),
                    });
                }
            }
            let files = self.files.clone();
            let text = challenge::map_text(&hosts, &answers);
            tokio::task::spawn_blocking(move || files.write_acme_map(&text))
                .await
                .map_err(|e| AcmeMapError::Refused {
                    kind: "write_acme_map",
                    reply: e.to_string(),
                })??;
            if !cmds.is_empty() {
                info!(
                    commands = cmds.len(),
                    hosts = hosts.len(),
                    answers = answers.len(),
                    "ACME challenge map brought in step"
                );
            }
        } else {
            debug!("ACME challenge map in step");
        }
        self.handle
            .applied(answers.iter().map(|(t, _)| t.clone()).collect());
        self.applied = Some(wanted);
        Ok(cmds.len())
    }
}

/// The `del map` for `key` (a marked host or an answer's path), if it is one of ours.
fn delete(
    map: &MapPath,
    key: &str,
    _hosts: &[Host],
    _answers: &[(Token, challenge::KeyAuthorization)],
) -> Option<Command> {
    let mk = crate::model::MapKey::parse(key).ok()?;
    Some(Command::DelMap {
        map: map.clone(),
        key: mk,
    })
}

/// The `add map` for `key` of the wanted entries.
fn add(
    map: &MapPath,
    key: &str,
    hosts: &[Host],
    answers: &[(Token, challenge::KeyAuthorization)],
) -> Option<Command> {
    if let Some((token, ka)) = answers.iter().find(|(t, _)| t.path() == key) {
        return Some(challenge::put_token(map, token, ka));
    }
    hosts
        .iter()
        .find(|h| h.as_str() == key)
        .map(|h| challenge::mark_host(map, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::store::{account_labels, account_name, cert_labels, cert_names, AcmeView};
    use crate::model::{BackendName, WantedAcme};
    use crate::swarm::acme::SwarmObject;

    fn secret(name: &str, labels: BTreeMap<String, String>) -> SwarmObject {
        SwarmObject {
            id: format!("id-{name}"),
            version: 1,
            name: name.into(),
            labels,
            created: 100,
            data: None,
        }
    }

    #[test]
    fn a_certificate_swarm_holds_is_served_like_a_labelled_pair_and_the_account_is_delivered() {
        let dir = "https://ca.example/dir";
        let (handle, wanted) = AcmeHandle::detached(&account_name(dir));
        let hosts = vec![
            Host::parse("a.example").unwrap(),
            Host::parse("b.example").unwrap(),
        ];
        let mut desired = Desired::default();
        let backend = BackendName::for_service("web").unwrap();
        desired.acme.insert(
            backend.clone(),
            WantedAcme {
                service: "web".into(),
                hosts: hosts.clone(),
            },
        );
        let certs = AcmeCerts::new(
            handle.clone(),
            MapPath::new("/tmp/acme.map").unwrap(),
            Files::new("/tmp"),
        );

        // Nothing stored yet: the names are wanted, nothing is served, no account to deliver.
        let mut first = desired.clone();
        certs.settle(&mut first, 1_000);
        assert_eq!(wanted.borrow().len(), 1);
        assert!(first.certs.is_empty());
        assert!(first.extra_secrets.is_empty());

        let (crt, key) = cert_names(&hosts, 90_000);
        handle.set_view(AcmeView::from_listing(
            &[],
            &[
                secret(&crt, cert_labels(&hosts, "crt", 500, 90_000, dir)),
                secret(&key, cert_labels(&hosts, "key", 500, 90_000, dir)),
                secret(&account_name(dir), account_labels(dir)),
            ],
            dir,
        ));
        certs.settle(&mut desired, 1_000);
        let served = &desired.certs[&backend];
        assert_eq!(
            (served.secrets.cert.as_str(), served.secrets.key.as_str()),
            (crt.as_str(), key.as_str())
        );
        assert_eq!(served.hosts, hosts);
        assert_eq!(desired.extra_secrets, BTreeSet::from([account_name(dir)]));
        // A host added: while its certificate is ordered, the one for the others stays.
        let mut grown = Desired::default();
        let more = vec![
            hosts[0].clone(),
            hosts[1].clone(),
            Host::parse("c.example").unwrap(),
        ];
        grown.acme.insert(
            backend.clone(),
            WantedAcme {
                service: "web".into(),
                hosts: more,
            },
        );
        certs.settle(&mut grown, 1_000);
        assert_eq!(grown.certs[&backend].secrets.cert, crt);
        assert_eq!(
            grown.certs[&backend].hosts, hosts,
            "served for the names it holds"
        );
        // Expired: not served (the worker orders anew).
        let mut later = Desired {
            acme: desired.acme.clone(),
            ..Desired::default()
        };
        certs.settle(&mut later, 90_000);
        assert!(later.certs.is_empty());
    }
}
