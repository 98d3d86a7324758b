//! swarm-lb: Docker Swarm changes in, HAProxy Runtime API commands out.
//!
//! The flow is the layout: [`swarm`] watches Docker and emits a [`model::Snapshot`];
//! [`model::desired`] turns it into the routing Swarm asks for; [`haproxy`] reads what the
//! proxy holds; [`plan::plan`] diffs the two into typed commands (and, only when a backend
//! appears or disappears, a config to reload); [`reconcile`] applies them.
#![forbid(unsafe_code)]

pub mod acme;
pub mod backoff;
pub mod check;
mod fields;
pub mod haproxy;
pub mod hints;
pub mod model;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod swarm;
