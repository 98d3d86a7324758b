//! The parts of `bench-micro`: a real HAProxy started for the run ([`proxy`]), apply
//! throughput against a raw pipelined client ([`apply`]), reload of the large config
//! ([`reload`]), the pure core at scale ([`scale`]), and what the access rules cost per
//! request ([`access`]).

pub mod access;
pub mod apply;
pub mod procfs;
pub mod proxy;
pub mod reload;
pub mod scale;
