//! Interlock labels (`com.docker.lb.*`) on one service -> a typed [`Route`], or an error that
//! names the service, the label and the reason.

use super::{BackendName, Host, Mode, ServiceId};

pub const PREFIX: &str = "com.docker.lb.";
pub const HOSTS: &str = "com.docker.lb.hosts";
pub const PORT: &str = "com.docker.lb.port";
pub const NETWORK: &str = "com.docker.lb.network";
pub const BACKEND_MODE: &str = "com.docker.lb.backend_mode";

/// A service's routing, as its labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub service_id: ServiceId,
    pub backend: BackendName,
    pub hosts: Vec<Host>,
    pub port: u16,
    /// `com.docker.lb.network` as written (a name or id), if set.
    pub network: Option<String>,
    pub mode: Mode,
}

/// Why a service is not routed (or keeps its last good route).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("service {service}: label {label}={value:?}: {reason}")]
    Invalid {
        service: String,
        label: String,
        value: String,
        reason: String,
    },
    #[error("service {service}: label {label} is required")]
    Missing { service: String, label: String },
    #[error("service {service}: {reason}")]
    Service { service: String, reason: String },
}
