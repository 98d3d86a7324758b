//! testapp: the workload swarm-lb's end-to-end tests run as Swarm services.
//!
//! `GET /` names the task that answered (task name, hostname, image version, its addresses and
//! the address the connection came in on), `GET /slow?ms=N` answers after N ms, `GET /ws` echoes
//! websocket messages, `GET /health` says ok, `GET /stats` counts the other requests in flight.
//! On SIGTERM it drains like a well-behaved service: no new connections, in-flight requests
//! finish, idle keep-alive connections close, websockets get `1001 going away`, exit 0.
#![forbid(unsafe_code)]

pub mod info;
pub mod server;

pub use info::TaskInfo;
pub use server::{InFlight, Server};
