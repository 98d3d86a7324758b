//! `bench-scale`'s parts: a fake Docker Engine API holding a synthetic Swarm of N services
//! ([`engine`], its JSON in [`shapes`]), the admin socket seen through a counting relay
//! ([`admin`]), swarm-lb's own metrics ([`metrics`]), and one measured row per N ([`run`]).
//! Runs any swarm-lb binary by its CLI: the figures compare builds.

pub mod admin;
pub mod engine;
pub mod metrics;
pub mod run;
pub mod shapes;
