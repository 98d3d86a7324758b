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
//! is logged: errors name lines and users. A file is read and parsed again only when its
//! identity changes (inode, size, modification time: the copy job writes a new file), so a
//! pass costs one `stat` per secret, not a parse of every list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tracing::{error, info, warn};

use super::secrets::{DeliveryHandle, SecretStatus};
use super::stamp::FileStamp;
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
    certs
        .chain(auth)
        .chain(desired.extra_secrets.iter().cloned())
        .collect()
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
    /// Service -> the secret whose list is in force for it, and whether that list was
    /// delivered (false: the route lets nobody in until it is). The log says each change once.
    in_force: BTreeMap<String, (String, bool)>,
    /// The problems of the last pass, by their text (logged once, when they appear).
    reported: BTreeMap<String, LabelError>,
    /// Each secret's file as last read: its identity and what parsing it gave.
    parsed: BTreeMap<String, (FileStamp, Result<Vec<Entry>, Reason>)>,
    /// Files read and parsed so far (a test counts them).
    reads: u64,
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
            parsed: BTreeMap::new(),
            reads: 0,
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

    fn read(&mut self, secret: &str) -> Read {
        if let Some(delivery) = &self.delivery {
            match delivery.status(secret) {
                SecretStatus::Ready => {}
                SecretStatus::Pending => return Read::Pending,
                SecretStatus::Unknown => return Read::Refused(Reason::SecretUnknown),
                SecretStatus::Failed(why) => return Read::Refused(Reason::SecretDelivery { why }),
            }
        }
        let path = self.secrets_dir.join(secret);
        let unreadable = |e: std::io::Error| {
            Read::Refused(Reason::SecretUnreadable {
                why: e.kind().to_string(),
            })
        };
        let stamp = match FileStamp::of(&path) {
            Ok(stamp) => stamp,
            Err(e) => return unreadable(e),
        };
        if let Some((seen, outcome)) = self.parsed.get(secret) {
            if *seen == stamp {
                return match outcome {
                    Ok(entries) => Read::Ready(entries.clone()),
                    Err(reason) => Read::Refused(reason.clone()),
                };
            }
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => return unreadable(e),
        };
        self.reads += 1;
        let outcome = htpasswd::parse(&text).map_err(Reason::NotAnHtpasswdFile);
        self.parsed
            .insert(secret.to_owned(), (stamp, outcome.clone()));
        match outcome {
            Ok(entries) => Read::Ready(entries),
            Err(reason) => Read::Refused(reason),
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
            let previous = self.in_force.get(service).map(|(secret, _)| secret);
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
            let delivered = good.contains_key(&chosen);
            if delivered {
                render.insert(chosen.clone());
            }
            desired
                .hosts
                .insert(auth_key(service), auth_value(&chosen, realm));
            in_force.insert(service.clone(), (chosen, delivered));
        }
        for (service, now) in &in_force {
            if self.in_force.get(service) == Some(now) {
                continue;
            }
            let (secret, delivered) = now;
            if *delivered {
                info!(service = %service, secret = %secret, label = AUTH_BASIC, "basic-auth user list in force (hosts map entry)");
            } else {
                warn!(service = %service, secret = %secret, label = AUTH_BASIC, "basic-auth user list not delivered yet (no Docker secret of that name, or its copy job has not run): the route lets nobody in until it is");
            }
        }
        self.in_force = in_force;
        let keep: BTreeSet<&String> = self
            .in_force
            .values()
            .map(|(secret, _)| secret)
            .chain(wanted.values().map(|(s, _)| s))
            .collect();
        self.good.retain(|secret, _| keep.contains(secret));
        self.parsed.retain(|secret, _| keep.contains(secret));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::auth::{sections, USERLIST_PREFIX};
    use crate::model::fixtures::task;
    use crate::model::{DesiredTaskState, Network, Service, Snapshot};

    const BCRYPT: &str = "$2y$05$abcdefghijklmnopqrstuuJjX9o5m3wE3Vr2mN0m4mJ9gqH0lR1W6";

    /// `web` on `a.example` with `auth_basic=<secret>`, one task, on attachable network `n`.
    fn desired(secret: &str) -> Desired {
        let labels = [
            ("com.docker.lb.hosts", "a.example"),
            ("com.docker.lb.port", "80"),
            (AUTH_BASIC, secret),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let snap = Snapshot {
            services: crate::model::shared(vec![Service {
                id: "sid".into(),
                name: "web".into(),
                labels,
                networks: vec!["n".into()],
                vips: vec![],
            }]),
            tasks: crate::model::shared(vec![task("t1", 1, "10.0.0.2", DesiredTaskState::Running)]),
            networks: vec![Network {
                id: "n".into(),
                name: "front".into(),
                driver: "overlay".into(),
                attachable: true,
                ingress: false,
            }],
        };
        let d = crate::model::desired(&snap, &Default::default(), &BTreeMap::new());
        assert_eq!(d.errors, vec![], "the fixture routes");
        d
    }

    fn entry(d: &Desired) -> String {
        d.hosts
            .get(&auth_key("web"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    }

    fn names(lists: &Userlists) -> Vec<&str> {
        lists.lists().keys().map(String::as_str).collect()
    }

    #[test]
    fn a_new_list_is_rendered_beside_the_loaded_one_and_named_by_the_map_only_once_loaded() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("v1"), format!("alice:{BCRYPT}\n")).unwrap();
        std::fs::write(dir.path().join("v2"), "bob:$6$salt$hash\n").unwrap();
        let mut auth = AuthLists::new(dir.path());

        // First use: nothing loaded; the entry names v1 (nobody gets in until it loads).
        let mut d = desired("v1");
        let lists = auth.settle(&mut d, &BTreeMap::new());
        assert_eq!(entry(&d), "=a:v1:web");
        assert_eq!(names(&lists), ["v1"]);
        let loaded = crate::haproxy::auth::loaded_sections(&sections(&lists));

        // Rotation: v2 is rendered beside v1, the entry keeps v1 until v2 is loaded.
        let mut d = desired("v2");
        let lists = auth.settle(&mut d, &loaded);
        assert_eq!(entry(&d), "=a:v1:web");
        assert_eq!(names(&lists), ["v1", "v2"]);
        let loaded = crate::haproxy::auth::loaded_sections(&sections(&lists));
        let mut d = desired("v2");
        let lists = auth.settle(&mut d, &loaded);
        assert_eq!(entry(&d), "=a:v2:web");
        assert_eq!(names(&lists), ["v2"]);
        assert!(lists.loaded_in(&loaded), "no reload to drop v1");
    }

    #[test]
    fn a_list_is_read_again_only_when_its_file_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("v1");
        std::fs::write(&file, format!("alice:{BCRYPT}\n")).unwrap();
        let mut auth = AuthLists::new(dir.path());
        for _ in 0..5 {
            auth.settle(&mut desired("v1"), &BTreeMap::new());
        }
        assert_eq!(auth.reads, 1, "five passes, one read");
        // The copy job writes the secret's new data as a new file.
        let next = dir.path().join("v1.new");
        std::fs::write(&next, format!("alice:{BCRYPT}\nbob:{BCRYPT}\n")).unwrap();
        std::fs::rename(&next, &file).unwrap();
        let lists = auth.settle(&mut desired("v1"), &BTreeMap::new());
        assert_eq!(auth.reads, 2);
        assert_eq!(lists.lists()["v1"].len(), 2, "bob is in");
        // A file that became bad is refused once read, and stays refused unread.
        std::fs::write(&next, "eve:$apr1$abc$def\n").unwrap();
        std::fs::rename(&next, &file).unwrap();
        auth.settle(&mut desired("v1"), &BTreeMap::new());
        auth.settle(&mut desired("v1"), &BTreeMap::new());
        assert_eq!(auth.reads, 3);
        assert_eq!(auth.problems().len(), 1, "{:?}", auth.problems());
    }

    #[test]
    fn a_bad_secret_keeps_the_last_good_list_and_is_one_problem_naming_service_label_and_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("v1"), format!("alice:{BCRYPT}\n")).unwrap();
        std::fs::write(dir.path().join("md5"), "eve:$apr1$abc$def\n").unwrap();
        let mut auth = AuthLists::new(dir.path());
        let mut d = desired("v1");
        let lists = auth.settle(&mut d, &BTreeMap::new());
        let loaded = crate::haproxy::auth::loaded_sections(&sections(&lists));
        for bad in ["md5", "missing"] {
            let mut d = desired(bad);
            let lists = auth.settle(&mut d, &loaded);
            assert_eq!(entry(&d), "=a:v1:web", "{bad}");
            assert_eq!(names(&lists), ["v1"], "{bad}");
            let problems: Vec<String> = auth.problems().iter().map(|e| e.to_string()).collect();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with(&format!(
                    "service web: label com.docker.lb.auth_basic=\"{bad}\": "
                )),
                "{problems:?}"
            );
            assert!(
                !problems[0].contains("$apr1$abc"),
                "a hash leaked: {problems:?}"
            );
        }
        // Fixed: the problem goes.
        let mut d = desired("v1");
        auth.settle(&mut d, &loaded);
        assert_eq!(auth.problems(), vec![]);
    }

    #[test]
    fn a_list_not_delivered_yet_is_announced_as_letting_nobody_in_and_in_force_once_it_is() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut auth = AuthLists::new(dir.path());
        let mut d = desired("v1");
        let lists = auth.settle(&mut d, &BTreeMap::new());
        assert!(lists.is_empty(), "nothing to render: nobody is let in");
        assert_eq!(auth.in_force["web"], ("v1".to_owned(), false));
        std::fs::write(dir.path().join("v1"), format!("alice:{BCRYPT}\n")).unwrap();
        let mut d = desired("v1");
        auth.settle(&mut d, &BTreeMap::new());
        assert_eq!(auth.in_force["web"], ("v1".to_owned(), true));
    }

    #[test]
    fn a_service_that_never_had_a_good_list_names_one_nobody_loaded() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("empty"), "").unwrap();
        let mut auth = AuthLists::new(dir.path());
        let mut d = desired("empty");
        let lists = auth.settle(&mut d, &BTreeMap::new());
        assert_eq!(entry(&d), "=a:empty:web");
        assert!(
            lists.is_empty(),
            "no list rendered: the rules let nobody in"
        );
        assert!(auth.problems()[0].to_string().contains("no user"));
    }

    #[test]
    fn lists_loaded_at_start_stand_while_their_secrets_are_pending() {
        let dir = tempfile::tempdir().expect("tmp");
        let (delivery, _rx) = DeliveryHandle::detached();
        let mut auth = AuthLists::new(dir.path()).with_delivery(delivery.clone());
        let config = format!("userlist {USERLIST_PREFIX}v1\n    user alice password {BCRYPT}\n");
        auth.seed(crate::haproxy::auth::loaded_lists(&config));
        let loaded = crate::haproxy::auth::loaded_sections(&config);
        let mut d = desired("v1");
        let lists = auth.settle(&mut d, &loaded);
        assert_eq!(entry(&d), "=a:v1:web");
        assert!(
            lists.loaded_in(&loaded) && !lists.is_empty(),
            "no reload at start"
        );
        assert_eq!(auth.problems(), vec![], "pending is no problem");
        // Docker lists no such secret: an error naming it; the loaded list stays.
        delivery.set("v1", SecretStatus::Unknown);
        let mut d = desired("v1");
        auth.settle(&mut d, &loaded);
        assert_eq!(entry(&d), "=a:v1:web");
        assert!(auth.problems()[0]
            .to_string()
            .contains("Docker lists no secret"));
    }
}
