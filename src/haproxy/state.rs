//! What HAProxy holds, as plain data: backends with their servers in slot order, and the hosts
//! map. The same type describes the proxy as read back ("actual") and as it must be after a
//! plan ("target"), and [`ProxyState::apply`] is the pure model of a runtime command's effect,
//! which the planner's property tests replay.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::command::Command;
use crate::model::{
    BackendName, BackendOptions, MapKey, MapValue, Mode, ServerName, ServerOptions,
};

/// The address of a free slot. Literal (a slot with a hostname refuses `set server addr` on
/// 2.6) and never `0.0.0.0`, which would mean "the client's original destination".
pub const PLACEHOLDER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);

/// A server's administrative state, folded from `srv_admin_state`'s bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: ServerName,
    pub addr: SocketAddr,
    pub admin: Admin,
}

impl Server {
    /// A slot holding nothing: placeholder address, in maintenance.
    pub fn free(name: ServerName) -> Self {
        Self {
            name,
            addr: PLACEHOLDER,
            admin: Admin::Maint,
        }
    }
    pub fn is_free(&self) -> bool {
        self.admin == Admin::Maint && self.addr == PLACEHOLDER
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    /// `Vip` when the backend's only server is named `vip`; `Task` (slots `s1..sN`) otherwise.
    pub mode: Mode,
    /// In slot order (`s1`, `s2`, ...), or the single `vip` server.
    pub servers: Vec<Server>,
    /// The backend's balancing options. The Runtime API cannot show them: read back from
    /// HAProxy they are the default, and the driver fills them in from the config HAProxy
    /// loaded (see [`crate::haproxy::render::backend_options`]).
    pub options: BackendOptions,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyState {
    /// Only the driver's backends (named after services); internal `_` backends are left out.
    /// Shared: a clone of the state (the known state, a plan's target, the files' mirror)
    /// copies one pointer per backend, and a backend is copied only when it is changed
    /// ([`Arc::make_mut`]); two states sharing a backend compare it by address.
    pub backends: BTreeMap<BackendName, Arc<BackendState>>,
    /// The hosts map: route key -> what the frontend does (see [`MapKey`], [`MapValue`]).
    pub hosts: BTreeMap<MapKey, MapValue>,
}

impl ProxyState {
    /// The backend serving `service`: the newest generation of its backends (`web`, `web:2`,
    /// ...; see `plan::generation`), if HAProxy holds any.
    pub fn serving(&self, service: &str) -> Option<(&BackendName, &BackendState)> {
        self.backends
            .iter()
            .filter(|(name, _)| name.service() == service)
            .max_by_key(|(name, _)| name.generation())
            .map(|(name, b)| (name, &**b))
    }

    /// This state with only the backends `names` (those it holds) and every host entry: what
    /// a change confined to those backends is compared on.
    pub fn only(&self, names: &std::collections::BTreeSet<BackendName>) -> ProxyState {
        ProxyState {
            backends: names
                .iter()
                .filter_map(|n| self.backends.get(n).map(|b| (n.clone(), b.clone())))
                .collect(),
            hosts: self.hosts.clone(),
        }
    }

    /// [`ProxyState::serving`] for every service at once, in one walk over the backends
    /// (service name -> its newest generation): callers asking for many services use this,
    /// not `serving` in a loop, which scans every backend per call (at 10,000 services half
    /// of a pass's CPU went there).
    pub fn serving_by_service(&self) -> HashMap<&str, (&BackendName, &BackendState)> {
        let mut out: HashMap<&str, (&BackendName, &BackendState)> =
            HashMap::with_capacity(self.backends.len());
        for (name, b) in &self.backends {
            let entry = out.entry(name.service()).or_insert((name, &**b));
            if name.generation() > entry.0.generation() {
                *entry = (name, &**b);
            }
        }
        out
    }
}

/// A runtime command that does not fit the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("no backend {backend}")]
    NoBackend { backend: BackendName },
    #[error("no server {backend}/{server}")]
    NoServer {
        backend: BackendName,
        server: ServerName,
    },
    #[error("server {backend}/{server} already exists")]
    ServerExists {
        backend: BackendName,
        server: ServerName,
    },
    #[error("backend {backend} already exists")]
    BackendExists { backend: BackendName },
    #[error("backend {backend} still has {servers} servers")]
    BackendNotEmpty {
        backend: BackendName,
        servers: usize,
    },
    #[error("server {backend}/{server} is not in maint")]
    ServerNotInMaint {
        backend: BackendName,
        server: ServerName,
    },
    #[error("map key {key} already present")]
    MapKeyExists { key: MapKey },
    #[error("map key {key} not present")]
    NoMapKey { key: MapKey },
}

impl ProxyState {
    /// The effect HAProxy gives `cmd`, modelled. Errors where HAProxy would refuse it.
    ///
    /// The state models one map, the hosts map, so the map path of a map command is not
    /// checked. `add map` refuses a key already present although HAProxy would accept a
    /// duplicate: the planner must never produce one, and this is where the tests catch it.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), ApplyError> {
        match cmd {
            Command::SetAddr {
                backend,
                server,
                addr,
            } => self.server_mut(backend, server)?.addr = *addr,
            Command::SetState {
                backend,
                server,
                state,
            } => self.server_mut(backend, server)?.admin = *state,
            // Health checks are not part of the modelled state; the server must exist.
            Command::EnableHealth { backend, server } => {
                self.server_mut(backend, server)?;
            }
            Command::AddServer {
                backend,
                server,
                addr,
                keywords,
            } => {
                let b = self.backend_mut(backend)?;
                if b.servers.iter().any(|s| s.name == *server) {
                    return Err(ApplyError::ServerExists {
                        backend: backend.clone(),
                        server: server.clone(),
                    });
                }
                b.servers.push(Server {
                    name: server.clone(),
                    addr: *addr,
                    admin: Admin::Maint,
                });
                // Read back, the backend would be classified from its servers again.
                b.mode = mode_of(&b.servers);
                // The backend's server keywords are those its servers are added with (the
                // driver adds every server of a backend with the same ones).
                b.options = BackendOptions::from_parts(b.options.section(), keywords.options());
            }
            // Certificates are not part of the modelled state (they live in the crt-list
            // files, kept by `tls::CertFiles`).
            Command::NewSslCert { .. }
            | Command::SetSslCert { .. }
            | Command::CommitSslCert { .. }
            | Command::AbortSslCert { .. }
            | Command::AddSslCrtList { .. }
            | Command::DelSslCrtList { .. }
            | Command::DelSslCert { .. } => {}
            Command::AddBackend { backend, defaults } => {
                if self.backends.contains_key(backend) {
                    return Err(ApplyError::BackendExists {
                        backend: backend.clone(),
                    });
                }
                self.backends.insert(
                    backend.clone(),
                    Arc::new(BackendState {
                        mode: Mode::Task,
                        servers: Vec::new(),
                        options: BackendOptions::from_parts(
                            defaults.section().clone(),
                            ServerOptions::default(),
                        ),
                    }),
                );
            }
            // Publication and cookie settings are not part of the modelled state; the
            // backend must exist.
            Command::PublishBackend { backend }
            | Command::UnpublishBackend { backend }
            | Command::SetDynamicCookieKey { backend, .. }
            | Command::EnableDynamicCookie { backend } => {
                self.backend_mut(backend)?;
            }
            Command::WaitServerRemovable {
                backend, server, ..
            } => {
                self.server_mut(backend, server)?;
            }
            Command::DelServer { backend, server } => {
                if self.server_mut(backend, server)?.admin != Admin::Maint {
                    return Err(ApplyError::ServerNotInMaint {
                        backend: backend.clone(),
                        server: server.clone(),
                    });
                }
                let b = self.backend_mut(backend)?;
                b.servers.retain(|s| s.name != *server);
                b.mode = mode_of(&b.servers);
            }
            Command::DelBackend { backend } => {
                let servers = self.backend_mut(backend)?.servers.len();
                if servers > 0 {
                    return Err(ApplyError::BackendNotEmpty {
                        backend: backend.clone(),
                        servers,
                    });
                }
                self.backends.remove(backend);
            }
            Command::AddMap { key, value, .. } => {
                if self.hosts.contains_key(key) {
                    return Err(ApplyError::MapKeyExists { key: key.clone() });
                }
                self.hosts.insert(key.clone(), value.clone());
            }
            Command::SetMap { key, value, .. } => match self.hosts.get_mut(key) {
                Some(v) => *v = value.clone(),
                None => return Err(ApplyError::NoMapKey { key: key.clone() }),
            },
            Command::DelMap { key, .. } => {
                if self.hosts.remove(key).is_none() {
                    return Err(ApplyError::NoMapKey { key: key.clone() });
                }
            }
        }
        Ok(())
    }

    fn backend_mut(&mut self, backend: &BackendName) -> Result<&mut BackendState, ApplyError> {
        self.backends
            .get_mut(backend)
            .map(Arc::make_mut)
            .ok_or_else(|| ApplyError::NoBackend {
                backend: backend.clone(),
            })
    }

    fn server_mut(
        &mut self,
        backend: &BackendName,
        server: &ServerName,
    ) -> Result<&mut Server, ApplyError> {
        self.backend_mut(backend)?
            .servers
            .iter_mut()
            .find(|s| s.name == *server)
            .ok_or_else(|| ApplyError::NoServer {
                backend: backend.clone(),
                server: server.clone(),
            })
    }
}

/// The mode a backend with these servers is read back as (see [`BackendState::mode`]).
pub fn mode_of(servers: &[Server]) -> Mode {
    match servers {
        [only] if only.name.as_str() == ServerName::VIP => Mode::Vip,
        _ => Mode::Task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::MapPath;

    fn be(name: &str) -> BackendName {
        BackendName::for_service(name).unwrap()
    }
    fn host(name: &str) -> MapKey {
        MapKey::host(&crate::model::Host::parse(name).unwrap())
    }
    fn val(name: &str) -> MapValue {
        MapValue::backend(&be(name), 0)
    }
    fn map() -> MapPath {
        MapPath::new("/etc/haproxy/hosts.map").unwrap()
    }
    fn one_slot_state() -> ProxyState {
        let mut s = ProxyState::default();
        s.backends.insert(
            be("web"),
            std::sync::Arc::new(BackendState {
                options: Default::default(),
                mode: Mode::Task,
                servers: vec![Server::free(ServerName::slot(1))],
            }),
        );
        s
    }

    #[test]
    fn serving_by_service_names_each_services_newest_generation_as_serving_does() {
        let mut s = ProxyState::default();
        let empty = || BackendState {
            options: Default::default(),
            mode: Mode::Task,
            servers: vec![],
        };
        let web = be("web");
        let web3 = web.next_generation().next_generation();
        // `web-x` sorts between `web` and `web:2`: the walk must not rely on order.
        for name in [
            web.clone(),
            be("web-x"),
            web.next_generation(),
            web3.clone(),
            be("api"),
        ] {
            s.backends.insert(name, Arc::new(empty()));
        }
        let all = s.serving_by_service();
        assert_eq!(all.len(), 3);
        for service in ["web", "web-x", "api"] {
            assert_eq!(
                all.get(service).map(|(n, _)| *n),
                s.serving(service).map(|(n, _)| n)
            );
        }
        assert_eq!(all["web"].0, &web3);
    }

    #[test]
    fn set_addr_and_set_state_change_only_the_named_server() {
        let mut s = one_slot_state();
        let addr: SocketAddr = "10.0.0.2:80".parse().unwrap();
        s.apply(&Command::SetAddr {
            backend: be("web"),
            server: ServerName::slot(1),
            addr,
        })
        .unwrap();
        s.apply(&Command::SetState {
            backend: be("web"),
            server: ServerName::slot(1),
            state: Admin::Ready,
        })
        .unwrap();
        let server = &s.backends[&be("web")].servers[0];
        assert_eq!((server.addr, server.admin), (addr, Admin::Ready));
    }

    #[test]
    fn commands_on_a_missing_backend_or_server_are_refused() {
        let mut s = one_slot_state();
        let before = s.clone();
        let err = s.apply(&Command::SetState {
            backend: be("api"),
            server: ServerName::slot(1),
            state: Admin::Ready,
        });
        assert_eq!(err, Err(ApplyError::NoBackend { backend: be("api") }));
        let err = s.apply(&Command::SetAddr {
            backend: be("web"),
            server: ServerName::slot(2),
            addr: PLACEHOLDER,
        });
        assert_eq!(
            err,
            Err(ApplyError::NoServer {
                backend: be("web"),
                server: ServerName::slot(2)
            })
        );
        assert_eq!(s, before);
    }

    #[test]
    fn an_added_server_starts_in_maint_and_cannot_be_added_twice() {
        let mut s = one_slot_state();
        let add = Command::AddServer {
            backend: be("web"),
            server: ServerName::slot(2),
            addr: "10.0.0.3:80".parse().unwrap(),
            keywords: Default::default(),
        };
        s.apply(&add).unwrap();
        let added = &s.backends[&be("web")].servers[1];
        assert_eq!(
            (added.name.clone(), added.admin),
            (ServerName::slot(2), Admin::Maint)
        );
        assert_eq!(
            s.apply(&add),
            Err(ApplyError::ServerExists {
                backend: be("web"),
                server: ServerName::slot(2)
            })
        );
    }

    #[test]
    fn map_keys_must_be_absent_to_add_and_present_to_set_or_delete() {
        let mut s = ProxyState::default();
        let add = Command::AddMap {
            map: map(),
            key: host("a.example"),
            value: val("web"),
        };
        s.apply(&add).unwrap();
        assert_eq!(
            s.apply(&add),
            Err(ApplyError::MapKeyExists {
                key: host("a.example")
            })
        );
        s.apply(&Command::SetMap {
            map: map(),
            key: host("a.example"),
            value: val("api"),
        })
        .unwrap();
        assert_eq!(s.hosts[&host("a.example")], val("api"));
        let set_missing = Command::SetMap {
            map: map(),
            key: host("b.example"),
            value: val("api"),
        };
        assert_eq!(
            s.apply(&set_missing),
            Err(ApplyError::NoMapKey {
                key: host("b.example")
            })
        );
        let del = Command::DelMap {
            map: map(),
            key: host("a.example"),
        };
        s.apply(&del).unwrap();
        assert!(s.hosts.is_empty());
        assert_eq!(
            s.apply(&del),
            Err(ApplyError::NoMapKey {
                key: host("a.example")
            })
        );
    }
}
