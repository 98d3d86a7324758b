//! Typed Runtime API commands. Only [`super::codec::encode`] turns them into text, and only
//! [`super::codec::check_reply`] and the codec's parsers read what HAProxy answers.
//!
//! Every argument is a checked newtype or a number, so no command needs escaping and each
//! encodes to exactly one line, except [`Command::SetSslCert`]: a command line followed by a
//! payload (HAProxy's `<<` form: PEM lines, ended by the blank line the client's line
//! terminator makes). [`Pem`] is checked to hold no blank line, so the payload cannot end early
//! and nothing after it can be read as a command.

use std::net::SocketAddr;

use super::state::Admin;
use crate::model::{
    is_cookie_name, BackendName, BackendOptions, MapKey, MapValue, SectionOptions, ServerName,
    ServerOptions,
};

/// The path of a map file as HAProxy names it in `map(...)`; checked to hold no syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapPath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("map path {path:?}: {reason}")]
pub struct MapPathError {
    pub path: String,
    pub reason: &'static str,
}

impl MapPath {
    pub fn new(path: &str) -> Result<Self, MapPathError> {
        let err = |reason| MapPathError {
            path: path.to_owned(),
            reason,
        };
        if !path.starts_with('/') {
            return Err(err("must be absolute"));
        }
        if !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
        {
            return Err(err("only letters, digits, '/', '.', '-', '_' are allowed"));
        }
        Ok(Self(path.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The path of a certificate file (or of a crt-list) as HAProxy names it in `ssl cert` and
/// `ssl crt-list` commands: the same path the crt-list file on disk lists, so a reload loads
/// the same certificate. Checked like [`MapPath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertPath(MapPath);

impl CertPath {
    pub fn new(path: &str) -> Result<Self, MapPathError> {
        MapPath::new(path).map(Self)
    }
    /// The file `name` in the directory of `map` (`/etc/haproxy/backend-ca.pem` beside
    /// `/etc/haproxy/hosts.map`). `name` is the driver's own constant: letters, digits, `-.`.
    pub fn beside(map: &MapPath, name: &str) -> Self {
        let dir = map.as_str().rsplit_once('/').map_or("", |(dir, _)| dir);
        let path = if dir.is_empty() && !map.as_str().starts_with('/') {
            name.to_owned()
        } else {
            format!("{dir}/{name}")
        };
        Self(MapPath(path))
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for CertPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PEM text (certificate chain and private key) to send as a payload: lines of printable ASCII,
/// none of them blank (a blank line ends a payload), no trailing newline. Its `Debug` hides the
/// text: a key must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PEM payload: {reason}")]
pub struct PemError {
    pub reason: &'static str,
}

impl Pem {
    /// Normalises line ends (`\r\n` -> `\n`) and drops blank lines and surrounding whitespace;
    /// refuses text without a `-----BEGIN ` line or with characters other than printable ASCII.
    pub fn new(text: &str) -> Result<Self, PemError> {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if !lines.iter().any(|l| l.starts_with("-----BEGIN ")) {
            return Err(PemError {
                reason: "no -----BEGIN line",
            });
        }
        if !lines
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        {
            return Err(PemError {
                reason: "only printable ASCII lines are allowed",
            });
        }
        Ok(Self(lines.join("\n")))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Bytes of text, without the final newline.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pem({} bytes)", self.0.len())
    }
}

/// The server keywords a backend's options call for, which the rendered config puts in the
/// backend's `default-server` lines and `add server` must repeat: a server added at runtime
/// inherits no `default-server` (HAProxy's management guide, `add server`). Measured: 2.6.12
/// and 3.4.7 accept every keyword here in `add server`; a `ca-file` there must already be in
/// HAProxy's CA store (`'ca-file' : unable to load <path>.` otherwise), which the config
/// ensures (see [`super::render`]'s CA defaults section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerKeywords {
    /// What the keywords say; their text is the codec's ([`super::codec::push_server_keywords`]
    /// and, for the rendered config, [`super::codec::read_server_keywords`]).
    options: ServerOptions,
    /// The CA bundle `ssl verify required ca-file <path>` names: set exactly when `options`
    /// verify the server's certificate (the constructor keeps it so).
    ca_file: Option<CertPath>,
}

impl ServerKeywords {
    /// The keywords of a server of a backend with `options` (its [`BackendOptions::server`]
    /// part); `ca_file` is the CA bundle a verified TLS connection checks the server against.
    pub fn for_options(options: &BackendOptions, ca_file: &CertPath) -> Self {
        Self::new(options.server(), ca_file)
    }

    /// The keywords that spell `options`.
    pub fn new(options: ServerOptions, ca_file: &CertPath) -> Self {
        let verify = options.backend_tls.is_some_and(|tls| tls.verify);
        ServerKeywords {
            options,
            ca_file: verify.then(|| ca_file.clone()),
        }
    }

    /// The server options these keywords carry (the inverse of [`ServerKeywords::new`]).
    pub fn options(&self) -> ServerOptions {
        self.options
    }

    /// The CA bundle a verified connection names, if the keywords verify.
    pub fn ca_file(&self) -> Option<&CertPath> {
        self.ca_file.as_ref()
    }
}

/// A named `defaults` section the renderer writes for one set of backend options, so that
/// HAProxy 3.4+ can create a backend with those options at runtime (`add backend <b> from
/// <defaults>`). The name spells the options that live in a proxy section:
/// `swarm-lb.roundrobin`, `swarm-lb.source` (`balance source` + consistent hashing), either
/// followed by `.httpchk` for an HTTP health check, `.compress` for compression, then `.cookie.<name>` for a sticky cookie (`cookie <name> insert indirect nocache
/// dynamic`), and `swarm-lb.tcp.<balance>` for TLS passthrough (`mode tcp`, from the
/// template's TCP defaults).
///
/// Only [`SectionOptions`] make a section; the server options are keywords
/// ([`ServerKeywords`]) that `add server` carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DefaultsName {
    name: String,
    section: SectionOptions,
}

impl DefaultsName {
    /// Prefix of every named defaults section the driver renders.
    pub const PREFIX: &'static str = "swarm-lb.";
    /// After [`DefaultsName::PREFIX`]: a passthrough (`mode tcp`) section.
    const TCP: &'static str = "tcp.";
    /// After the balance: an HTTP health check (`option httpchk`, see
    /// [`crate::model::HealthCheck`]).
    const HTTPCHK: &'static str = ".httpchk";
    /// After the balance and any `.httpchk`: compression (`compression algo` / `type`).
    const COMPRESS: &'static str = ".compress";

    /// The defaults section for `options` (their [`BackendOptions::section`] part), or `None`
    /// when they cannot come from one (a cookie name a section name cannot hold).
    pub fn for_options(options: &BackendOptions) -> Option<Self> {
        Self::for_section(options.section())
    }

    /// The defaults section holding `section`.
    pub fn for_section(section: SectionOptions) -> Option<Self> {
        // A backend's own `timeout connect` (before 3.4) is in no named defaults section.
        if section.timeout_connect_ms.is_some() {
            return None;
        }
        let mut name = String::from(Self::PREFIX);
        if section.passthrough {
            name.push_str(Self::TCP);
        }
        name.push_str(if section.ip_hash {
            "source"
        } else {
            "roundrobin"
        });
        if section.httpchk {
            if section.passthrough {
                return None;
            }
            name.push_str(Self::HTTPCHK);
        }
        if section.compress {
            if section.passthrough {
                return None;
            }
            name.push_str(Self::COMPRESS);
        }
        if let Some(cookie) = &section.sticky_cookie {
            if !is_cookie_name(cookie) {
                return None;
            }
            name.push_str(".cookie.");
            name.push_str(cookie);
        }
        Some(Self { name, section })
    }

    /// The section a rendered config names `name`, if the renderer wrote it (the inverse of
    /// [`DefaultsName::for_section`]).
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(Self::PREFIX)?;
        let (passthrough, rest) = match rest.strip_prefix(Self::TCP) {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let (balance, cookie) = match rest.split_once(".cookie.") {
            Some((b, c)) => (b, Some(c.to_owned())),
            None => (rest, None),
        };
        let (balance, compress) = match balance.strip_suffix(Self::COMPRESS) {
            Some(balance) => (balance, true),
            None => (balance, false),
        };
        let (balance, httpchk) = match balance.strip_suffix(Self::HTTPCHK) {
            Some(balance) => (balance, true),
            None => (balance, false),
        };
        let ip_hash = match balance {
            "source" => true,
            "roundrobin" => false,
            _ => return None,
        };
        let found = Self::for_section(SectionOptions {
            ip_hash,
            sticky_cookie: cookie,
            passthrough,
            httpchk,
            compress,
            timeout_connect_ms: None,
        })?;
        (found.name == name).then_some(found)
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The section options a backend created from this section has (its servers' keywords
    /// come with `add server`).
    pub fn section(&self) -> &SectionOptions {
        &self.section
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `set server <b>/<s> addr <ip> port <port>` (IPv6 without brackets). HAProxy answers
    /// with a warning either way; the codec tells success (`IP changed from`, `no need to
    /// change the addr`) from refusal.
    SetAddr {
        backend: BackendName,
        server: ServerName,
        addr: SocketAddr,
    },
    /// `set server <b>/<s> state ready|drain|maint`; prints nothing on success.
    SetState {
        backend: BackendName,
        server: ServerName,
        state: Admin,
    },
    /// `add server <b>/<s> <ip>:<port> check [<keywords>]` (IPv6 in brackets; options:
    /// [`super::codec::ADD_SERVER_OPTIONS`], then the backend's [`ServerKeywords`]). Needs a
    /// dynamic balance algorithm. The server starts in maint, and on 2.6 its check stays off
    /// (`show stat`: `no check`; measured on 3.4.7 too) until [`Command::EnableHealth`], which
    /// the planner sends once the server takes traffic.
    AddServer {
        backend: BackendName,
        server: ServerName,
        addr: SocketAddr,
        keywords: ServerKeywords,
    },
    /// `enable health <b>/<s>`: start the health check of a server added at runtime (prints
    /// nothing on success). The planner sends it when a server takes traffic, never for a
    /// free slot: a check enabled on a server still in maint runs anyway (measured on 2.6.12
    /// and 3.4.7), while a check enabled before pauses when the server enters maint and
    /// resumes when it leaves.
    EnableHealth {
        backend: BackendName,
        server: ServerName,
    },
    /// `add map <file> <key> <value>`. HAProxy accepts a duplicate key (lookups return the
    /// first); use [`Command::SetMap`] for a key that exists.
    AddMap {
        map: MapPath,
        key: MapKey,
        value: MapValue,
    },
    /// `set map <file> <key> <value>`: every entry of the key; `entry not found.` if none.
    SetMap {
        map: MapPath,
        key: MapKey,
        value: MapValue,
    },
    /// `del map <file> <key>`: every entry of the key; `Key not found.` if none.
    DelMap { map: MapPath, key: MapKey },
    /// `add backend <b> from <defaults>` (HAProxy 3.4+): a backend with no servers, its
    /// options from the named defaults section, created unpublished (routing skips it until
    /// [`Command::PublishBackend`]). Success: `New backend registered.`
    AddBackend {
        backend: BackendName,
        defaults: DefaultsName,
    },
    /// `publish backend <b>` (3.4+): routing rules may use it. Success: `Backend published.`
    /// (also when it already was).
    PublishBackend { backend: BackendName },
    /// `unpublish backend <b>` (3.4+): routing rules skip it. Success: `Backend
    /// unpublished.` (also when it already was).
    UnpublishBackend { backend: BackendName },
    /// `set dynamic-cookie-key backend <b> <key>`: the secret dynamic cookies of the backend's
    /// servers are hashed with. A backend created from a sticky defaults section sends an
    /// EMPTY cookie until it has a key and [`Command::EnableDynamicCookie`] (measured on
    /// 3.4.7). Prints nothing on success. The driver uses the backend's name as the key, as
    /// the rendered config does (hence a [`BackendName`]: checked, nothing to escape).
    SetDynamicCookieKey {
        backend: BackendName,
        key: BackendName,
    },
    /// `enable dynamic-cookie backend <b>`; prints nothing on success.
    EnableDynamicCookie { backend: BackendName },
    /// `wait <ms> srv-removable <b>/<s>` (3.0+): returns `Done.` once the server (in maint)
    /// has no connection left, or a refusal (`Server still has connections attached to it,
    /// cannot remove it.`, after the delay) while one remains.
    WaitServerRemovable {
        backend: BackendName,
        server: ServerName,
        timeout_ms: u32,
    },
    /// `del server <b>/<s>`: the server must be in maint with no connection (from 3.3 no idle
    /// one either). Success: `Server deleted.`
    DelServer {
        backend: BackendName,
        server: ServerName,
    },
    /// `del backend <b>` (3.4+): only an unpublished backend without servers, streams, or a
    /// literal reference in the config. The reply may start with HAProxy's own log lines
    /// (`Server <b>/<s> is going DOWN ...`); success is its last line, `Backend deleted.`
    DelBackend { backend: BackendName },
    /// `new ssl cert <f>`: an empty certificate store named `f` (2.2+). Success: `New empty
    /// certificate store '<f>'!`; `Certificate '<f>' already exists!` otherwise.
    NewSslCert { cert: CertPath },
    /// `set ssl cert <f> <<` + PEM payload + blank line: opens (or updates) a transaction
    /// replacing `f`'s certificate and key. Success: `Transaction created for certificate <f>!`
    /// (or `updated`), after one `+ ` prompt per payload line in prompt mode (measured on
    /// 2.6.12 and 3.4.7). The whole command must fit [`super::tls::payload_limit`].
    SetSslCert { cert: CertPath, pem: Pem },
    /// `commit ssl cert <f>`: apply the open transaction; every bind serving `f` serves the new
    /// certificate for new handshakes. Success: `Committing <f>` ... `Success!`.
    CommitSslCert { cert: CertPath },
    /// `abort ssl cert <f>`: drop the open transaction (after a refused `set`).
    AbortSslCert { cert: CertPath },
    /// `add ssl crt-list <list> <f>`: serve `f` on the binds using crt-list `list`, chosen by
    /// SNI from the certificate's names. HAProxy accepts the same entry twice: add once.
    /// Success: `Inserting certificate '<f>' in crt-list '<list>'.` ... `Success!`.
    AddSslCrtList { list: CertPath, cert: CertPath },
    /// `del ssl crt-list <list> <f>`. Success: `Entry '<f>' deleted in crtlist '<list>'!`.
    DelSslCrtList { list: CertPath, cert: CertPath },
    /// `del ssl cert <f>` (only once no crt-list uses it). Success: `Certificate '<f>' deleted!`.
    DelSslCert { cert: CertPath },
}

/// A read of HAProxy's state: changes nothing, never planned. The client sends these for
/// itself ([`super::AdminClient::query`]); the changes are [`Command`]s. `wait srv-removable`
/// is a [`Command`]: the planner sends it to sequence a removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `show servers state [<b>]`
    ShowServersState { backend: Option<BackendName> },
    /// `show map <file>`
    ShowMap { map: MapPath },
    /// `show info`
    ShowInfo,
    /// `show backend`: `# name`, then one backend name per line, every backend the process
    /// holds (also those without a server, which `show servers state` leaves out).
    ShowBackend,
}

impl Query {
    /// The read's kind, in the words of [`Command::kind`].
    pub fn kind(&self) -> &'static str {
        match self {
            Query::ShowServersState { .. } => "show_servers_state",
            Query::ShowMap { .. } => "show_map",
            Query::ShowInfo => "show_info",
            Query::ShowBackend => "show_backend",
        }
    }
}

impl Command {
    /// The command's kind, one word in snake case (`set_addr`): the `kind` label
    /// of `swarm_lb_runtime_commands_total`, and how logs and errors name a command (its
    /// runtime-API text is the encoder's alone).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::SetAddr { .. } => "set_addr",
            Command::SetState { .. } => "set_state",
            Command::AddServer { .. } => "add_server",
            Command::EnableHealth { .. } => "enable_health",
            Command::AddMap { .. } => "add_map",
            Command::SetMap { .. } => "set_map",
            Command::DelMap { .. } => "del_map",
            Command::NewSslCert { .. } => "new_ssl_cert",
            Command::SetSslCert { .. } => "set_ssl_cert",
            Command::CommitSslCert { .. } => "commit_ssl_cert",
            Command::AbortSslCert { .. } => "abort_ssl_cert",
            Command::AddSslCrtList { .. } => "add_ssl_crt_list",
            Command::DelSslCrtList { .. } => "del_ssl_crt_list",
            Command::DelSslCert { .. } => "del_ssl_cert",
            Command::AddBackend { .. } => "add_backend",
            Command::PublishBackend { .. } => "publish_backend",
            Command::UnpublishBackend { .. } => "unpublish_backend",
            Command::SetDynamicCookieKey { .. } => "set_dynamic_cookie_key",
            Command::EnableDynamicCookie { .. } => "enable_dynamic_cookie",
            Command::WaitServerRemovable { .. } => "wait_srv_removable",
            Command::DelServer { .. } => "del_server",
            Command::DelBackend { .. } => "del_backend",
        }
    }

    /// Bytes the command takes on the wire, line terminator(s) included.
    pub fn wire_len(&self) -> usize {
        super::codec::encode(self).len() + 1
    }
}
