//! One error type for everything that talks to Docker. bollard's own error never leaves this
//! module: it is mapped here, and kept only as an opaque `source`.

use std::time::Duration;

/// An error's cause, boxed so that no bollard (or hyper) type is part of the public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The endpoint string cannot be used (unknown scheme, empty path).
    #[error("invalid Docker endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        endpoint: String,
        reason: &'static str,
    },

    /// The engine could not be reached, or the connection broke.
    #[error("Docker engine at {endpoint} not reachable ({op})")]
    Unreachable {
        endpoint: String,
        op: &'static str,
        #[source]
        source: BoxError,
    },

    /// The engine answered with an error status.
    #[error("Docker {op} answered {status}: {message}")]
    Api {
        op: &'static str,
        status: u16,
        message: String,
    },

    /// The engine did not answer in time.
    #[error("Docker {op} did not answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },

    /// The reply was not the JSON this code expects (as a whole; single malformed items are
    /// skipped with a warning instead).
    #[error("cannot decode the Docker {op} reply")]
    Decode {
        op: &'static str,
        #[source]
        source: BoxError,
    },

    /// The event stream reported an error in band.
    #[error("Docker event stream error: {message}")]
    Stream { message: String },

    /// The engine Swarm state is read from is not an active Swarm manager (a worker's own
    /// socket, or a node outside any Swarm): give a manager's endpoint (`--manager`).
    #[error("Docker engine at {endpoint} is not a Swarm manager (Swarm state {state}): on a worker, give a manager's API with --manager / SWARM_LB_MANAGER")]
    NotManager { endpoint: String, state: String },

    /// Anything else the client library reports.
    #[error("Docker {op} failed")]
    Other {
        op: &'static str,
        #[source]
        source: BoxError,
    },
}

impl SwarmError {
    /// The engine answered 404 (a service, task or container that is gone).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SwarmError::Api { status: 404, .. })
    }

    /// Whether retrying the same call later may succeed (engine restarting, connection lost,
    /// server-side error), as opposed to a request that will keep failing.
    pub fn is_transient(&self) -> bool {
        match self {
            SwarmError::Unreachable { .. }
            | SwarmError::Timeout { .. }
            | SwarmError::Stream { .. } => true,
            SwarmError::Api { status, .. } => *status >= 500,
            SwarmError::InvalidEndpoint { .. }
            | SwarmError::NotManager { .. }
            | SwarmError::Decode { .. }
            | SwarmError::Other { .. } => false,
        }
    }

    /// Maps a bollard error; `endpoint` names the engine for connection errors.
    pub(super) fn from_bollard(
        op: &'static str,
        endpoint: &str,
        err: bollard::errors::Error,
    ) -> SwarmError {
        use bollard::errors::Error as B;
        match err {
            B::DockerResponseServerError {
                status_code,
                message,
            } => SwarmError::Api {
                op,
                status: status_code,
                message,
            },
            B::RequestTimeoutError => SwarmError::Timeout {
                op,
                after: super::REQUEST_TIMEOUT,
            },
            B::DockerStreamError { error } => SwarmError::Stream { message: error },
            e @ (B::JsonDataError { .. }
            | B::JsonSerdeError { .. }
            | B::APIVersionParseError {}
            | B::StrParseError { .. }) => SwarmError::Decode {
                op,
                source: e.into(),
            },
            e @ (B::IOError { .. }
            | B::HyperResponseError { .. }
            | B::HyperLegacyError { .. }
            | B::SocketNotFoundError(_)) => SwarmError::Unreachable {
                endpoint: endpoint.to_string(),
                op,
                source: e.into(),
            },
            e => SwarmError::Other {
                op,
                source: e.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_lost_connections_are_transient_client_errors_are_not() {
        let api = |status| SwarmError::Api {
            op: "list tasks",
            status,
            message: String::new(),
        };
        assert!(api(500).is_transient());
        assert!(api(503).is_transient());
        assert!(!api(404).is_transient());
        assert!(!api(409).is_transient());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = SwarmError::from_bollard(
            "ping",
            "unix:///x",
            bollard::errors::Error::IOError { err: io },
        );
        assert!(e.is_transient(), "{e:?}");
        let e = SwarmError::from_bollard(
            "ping",
            "unix:///x",
            bollard::errors::Error::RequestTimeoutError,
        );
        assert!(matches!(e, SwarmError::Timeout { op: "ping", .. }));
        let e = SwarmError::from_bollard(
            "ping",
            "unix:///x",
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message: "No such container: x".into(),
            },
        );
        assert!(matches!(e, SwarmError::Api { status: 404, .. }));
        assert!(!e.is_transient());
        assert!(e.is_not_found());
        assert!(!api(409).is_not_found() && !api(500).is_not_found());
    }
}
