//! Basic auth (`com.docker.lb.auth_basic`, `auth_realm`): each pass reads the htpasswd file of
//! every secret the labels name from the secrets directory (brought there by the copy job,
//! [`super::secrets`], as for certificates), checks it (`model::htpasswd`), and decides which
//! secret's user list is in force for each service; it writes that into the service's hosts
//! map entry (`*<service>`, `model::access`) and returns the lists the config must hold
//! (`haproxy::auth`).
//!
//! A list is put in force only once HAProxy has loaded it: a newly wanted list is rendered
//! beside the one in force, the pass reloads to load it (`Reconciler::load_userlists`), and
//! the next settle switches the map entry, so authenticated clients never meet an entry
//! naming a list their worker lacks. A problem (secret unknown, copy failed, not an htpasswd
//! file, a scheme HAProxy cannot check, empty) is logged once naming service, label and
//! reason, and the service keeps its last good list; a service that never had one keeps an
//! entry naming a list nobody loaded, which lets nobody in (fail closed). Nothing of a hash
//! is logged: errors name lines and users.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tracing::{error, info};

use super::secrets::{DeliveryHandle, SecretStatus};
use crate::haproxy::auth::{section, Userlists};
use crate::model::access::{auth_key, auth_value};
use crate::model::htpasswd::{self, Entry};
use crate::model::labels::{LabelError, AUTH_BASIC};
use crate::model::{Desired, Reason};

/// The secrets every label of `desired` names: certificate pairs and htpasswd files (what
/// secrets delivery copies; one set, so the two users of the delivery agree).
pub fn wanted_secrets(desired: &Desired) -> BTreeSet<String> {
    let certs = desired
        .certs
        .values()
        .flat_map(|w| [w.secrets.cert.clone(), w.secrets.key.clone()]);
    let auth = desired
        .routes
        .values()
        .filter_map(|r| r.route.access.auth.as_ref().map(|a| a.secret.clone()));
    certs.chain(auth).collect()
}

/// The basic-auth state kept between passes.
#[derive(Debug)]
pub struct AuthLists {
    /// One file per secret, named after it.
    secrets_dir: PathBuf,
    delivery: Option<DeliveryHandle>,
    /// The last good entries of each secret (read this run, or from the config HAProxy
    /// loaded, at start).
    good: BTreeMap<String, Vec<Entry>>,
    /// Service -> the secret whose list is in force for it.
    in_force: BTreeMap<String, String>,
    /// The problems of the last pass, by their text (logged once, when they appear).
    reported: BTreeMap<String, LabelError>,
}

/// A secret's file, or why not.
enum Read {
    Ready(Vec<Entry>),
    /// Its copy is on its way: what is in force stays.
    Pending,
    Refused(Reason),
}

impl AuthLists {
    pub fn new(secrets_dir: impl Into<PathBuf>) -> Self {
        Self {
            secrets_dir: secrets_dir.into(),
            delivery: None,
            good: BTreeMap::new(),
            in_force: BTreeMap::new(),
            reported: BTreeMap::new(),
        }
    }

    /// Read the secrets only once `delivery` has copied their current data.
    pub fn with_delivery(mut self, delivery: DeliveryHandle) -> Self {
        self.delivery = Some(delivery);
        self
    }

    pub fn delivery(&self) -> Option<&DeliveryHandle> {
        self.delivery.as_ref()
    }

    /// The lists of the config HAProxy loaded (at start): good until the secrets are read,
    /// so that a restart serves the same users without waiting for a copy, and reloads none.
    pub fn seed(&mut self, loaded: BTreeMap<String, Vec<Entry>>) {
        for (secret, entries) in loaded {
            self.good.entry(secret).or_insert(entries);
        }
    }

    /// The problems of the last pass (each names its service and label).
    pub fn problems(&self) -> Vec<LabelError> {
        self.reported.values().cloned().collect()
    }

    fn read(&self, secret: &str) -> Read {
        if let Some(delivery) = &self.delivery {
            match delivery.status(secret) {
                SecretStatus::Ready => {}
                SecretStatus::Pending => return Read::Pending,
                SecretStatus::Unknown => return Read::Refused(Reason::SecretUnknown),
                SecretStatus::Failed(why) => return Read::Refused(Reason::SecretDelivery { why }),
            }
        }
        match std::fs::read_to_string(self.secrets_dir.join(secret)) {
            Err(e) => Read::Refused(Reason::SecretUnreadable {
                why: e.kind().to_string(),
            }),
            Ok(text) => match htpasswd::parse(&text) {
                Ok(entries) => Read::Ready(entries),
                Err(e) => Read::Refused(Reason::NotAnHtpasswdFile(e)),
            },
        }
    }

    /// Decides each service's list in force, writes its `*<service>` entry into
    /// `desired.hosts`, and returns the lists the config must hold. `loaded`: the user list
    /// sections of the config HAProxy runs (`haproxy::auth::loaded_sections`).
    pub fn settle(
        &mut self,
        desired: &mut Desired,
        loaded: &BTreeMap<String, String>,
    ) -> Userlists {
        if let Some(delivery) = &self.delivery {
            delivery.want(wanted_secrets(desired));
        }
        let wanted: BTreeMap<String, (String, String)> = desired
            .routes
            .values()
            .filter_map(|r| {
                let auth = r.route.access.auth.as_ref()?;
                Some((
                    r.route.backend.service().to_owned(),
                    (auth.secret.clone(), auth.realm.clone()),
                ))
            })
            .collect();
        let secrets: BTreeSet<&String> = wanted.values().map(|(s, _)| s).collect();
        let mut refused: BTreeMap<String, Reason> = BTreeMap::new();
        for secret in secrets {
            match self.read(secret) {
                Read::Ready(entries) => {
                    self.good.insert(secret.clone(), entries);
                }
                Read::Pending => {}
                Read::Refused(reason) => {
                    refused.insert(secret.clone(), reason);
                }
            }
        }
        let good = &self.good;
        let is_loaded = |secret: &str| {
            good.get(secret)
                .is_some_and(|e| loaded.get(secret) == Some(&section(secret, e)))
        };
        let mut problems: BTreeMap<String, LabelError> = BTreeMap::new();
        let mut render: BTreeSet<String> = BTreeSet::new();
        let mut in_force = BTreeMap::new();
        for (service, (want, realm)) in &wanted {
            if let Some(reason) = refused.get(want) {
                let e = LabelError::invalid(service, AUTH_BASIC, want, reason.clone());
                problems.insert(e.to_string(), e);
            }
            let previous = self.in_force.get(service);
            let chosen = if good.contains_key(want) {
                // Rendered, so that a reload loads it if it is not loaded yet; meanwhile the
                // previous list stays in force if HAProxy holds it.
                render.insert(want.clone());
                match previous {
                    Some(p) if p != want && !is_loaded(want) && is_loaded(p) => p.clone(),
                    _ => want.clone(),
                }
            } else {
                match previous {
                    Some(p) if good.contains_key(p) => p.clone(),
                    // No good list ever: an entry naming a list nobody loaded lets nobody in.
                    _ => want.clone(),
                }
            };
            if good.contains_key(&chosen) {
                render.insert(chosen.clone());
            }
            desired
                .hosts
                .insert(auth_key(service), auth_value(&chosen, realm));
            in_force.insert(service.clone(), chosen);
        }
        for (service, secret) in &in_force {
            if self.in_force.get(service) != Some(secret) {
                info!(service = %service, secret = %secret, label = AUTH_BASIC, "basic-auth user list in force (hosts map entry)");
            }
        }
        self.in_force = in_force;
        let keep: BTreeSet<&String> = self
            .in_force
            .values()
            .chain(wanted.values().map(|(s, _)| s))
            .collect();
        self.good.retain(|secret, _| keep.contains(secret));
        for text in problems.keys() {
            if !self.reported.contains_key(text) {
                error!(error = %text, "basic-auth user list refused: the service keeps its last good list, or lets nobody in");
            }
        }
        for (text, e) in &self.reported {
            if !problems.contains_key(text) {
                info!(service = %e.service(), was = %text, "basic-auth problem gone");
            }
        }
        self.reported = problems;
        Userlists::new(
            render
                .into_iter()
                .filter_map(|s| self.good.get(&s).map(|e| (s, e.clone())))
                .collect(),
        )
    }
}
