//! The Swarm objects of automatic certificates (`docs/acme.md`): Docker configs for order
//! leases and HTTP-01 answers (their data is readable through the API, and neither is secret:
//! the CA fetches an answer over plain HTTP), Docker secrets for the account and the issued
//! certificates and keys (encrypted in Swarm's Raft log, readable only by a task they are
//! mounted into: the copy job brings them to each edge). Every object carries the label
//! [`KIND`], so one filtered list finds them all. What the objects mean is `acme::store`'s;
//! here are only the calls (bollard lives in `swarm/` and nowhere else).

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use base64::Engine as _;
use bollard::models::{ConfigSpec, SecretSpec};
use bollard::query_parameters::{
    ListConfigsOptionsBuilder, ListSecretsOptionsBuilder, UpdateConfigOptions,
};

use super::{Docker, SwarmError};

/// Label on every Swarm object swarm-lb's ACME code creates; its value is the object's kind
/// (`lock`, `token`, `account`, `cert`). `docker config ls --filter label=com.docker.lb.acme`.
pub const KIND: &str = "com.docker.lb.acme";

/// A Docker config or secret as listed: `data` only for configs (Docker never returns a
/// secret's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmObject {
    pub id: String,
    /// `Version.Index`: an update must name it (a stale one is refused).
    pub version: u64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `CreatedAt`, unix seconds (0 when Docker's text cannot be read).
    pub created: i64,
    pub data: Option<Vec<u8>>,
}

fn created(text: Option<&str>) -> i64 {
    text.and_then(super::rfc3339)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn filters() -> HashMap<&'static str, Vec<&'static str>> {
    HashMap::from([("label", vec![KIND])])
}

fn hash_labels(labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl SwarmError {
    /// The engine answered 409: a config or secret of that name exists (what makes a lease a
    /// lock), or an update named a stale version.
    pub fn is_conflict(&self) -> bool {
        matches!(self, SwarmError::Api { status: 409, .. })
    }

    /// The HTTP status the engine (or a proxy in front of it) answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            SwarmError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl Docker {
    /// Every config labelled [`KIND`], with its data decoded (`Spec.Data` is base64). A
    /// config whose data does not decode is listed without data.
    pub async fn acme_configs(&self) -> Result<Vec<SwarmObject>, SwarmError> {
        let options = ListConfigsOptionsBuilder::new().filters(&filters()).build();
        let list = self
            .inner
            .list_configs(Some(options))
            .await
            .map_err(self.err("list configs"))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let spec = c.spec?;
                Some(SwarmObject {
                    id: c.id?,
                    version: c.version.and_then(|v| v.index).unwrap_or(0),
                    name: spec.name?,
                    labels: spec.labels.unwrap_or_default().into_iter().collect(),
                    created: created(c.created_at.as_deref()),
                    data: spec
                        .data
                        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok()),
                })
            })
            .collect())
    }

    /// Every secret labelled [`KIND`] (names, IDs and labels; never data).
    pub async fn acme_secrets(&self) -> Result<Vec<SwarmObject>, SwarmError> {
        let options = ListSecretsOptionsBuilder::new().filters(&filters()).build();
        let list = self
            .inner
            .list_secrets(Some(options))
            .await
            .map_err(self.err("list secrets"))?;
        Ok(list
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                Some(SwarmObject {
                    id: s.id?,
                    version: s.version.and_then(|v| v.index).unwrap_or(0),
                    name: spec.name?,
                    labels: spec.labels.unwrap_or_default().into_iter().collect(),
                    created: created(s.created_at.as_deref()),
                    data: None,
                })
            })
            .collect())
    }

    /// `POST /configs/create`; the new config's ID. Errors: [`SwarmError::is_conflict`] when a
    /// config of that name exists (Swarm's Raft store decides: exactly one of several
    /// concurrent creators wins).
    pub async fn create_config(
        &self,
        name: &str,
        data: &[u8],
        labels: &BTreeMap<String, String>,
    ) -> Result<String, SwarmError> {
        let spec = ConfigSpec {
            name: Some(name.to_owned()),
            labels: Some(hash_labels(labels)),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            templating: None,
        };
        let created = self
            .inner
            .create_config(spec)
            .await
            .map_err(self.err("create config"))?;
        Ok(created.id)
    }

    /// `POST /configs/{id}/update?version=N` with new labels (the one field of a config that
    /// may change; name and data are sent unchanged). Errors: a stale `config.version` is
    /// refused by the engine (another edge updated it first).
    pub async fn update_config_labels(
        &self,
        config: &SwarmObject,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), SwarmError> {
        let spec = ConfigSpec {
            name: Some(config.name.clone()),
            labels: Some(hash_labels(labels)),
            data: Some(
                base64::engine::general_purpose::STANDARD
                    .encode(config.data.as_deref().unwrap_or_default()),
            ),
            templating: None,
        };
        let options = UpdateConfigOptions {
            version: i64::try_from(config.version).unwrap_or(i64::MAX),
        };
        self.inner
            .update_config(&config.id, spec, options)
            .await
            .map_err(self.err("update config"))
    }

    /// `DELETE /configs/{id}`; a config already gone is not an error.
    pub async fn remove_config(&self, id: &str) -> Result<(), SwarmError> {
        match self
            .inner
            .delete_config(id)
            .await
            .map_err(self.err("remove config"))
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// `POST /secrets/create`; the new secret's ID. Errors: [`SwarmError::is_conflict`] when a
    /// secret of that name exists.
    pub async fn create_secret(
        &self,
        name: &str,
        data: &[u8],
        labels: &BTreeMap<String, String>,
    ) -> Result<String, SwarmError> {
        let spec = SecretSpec {
            name: Some(name.to_owned()),
            labels: Some(hash_labels(labels)),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            driver: None,
            templating: None,
        };
        let created = self
            .inner
            .create_secret(spec)
            .await
            .map_err(self.err("create secret"))?;
        Ok(created.id)
    }

    /// `DELETE /secrets/{id}`; a secret already gone is not an error.
    pub async fn remove_secret(&self, id: &str) -> Result<(), SwarmError> {
        match self
            .inner
            .delete_secret(id)
            .await
            .map_err(self.err("remove secret"))
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}
