//! The parts of `bench-micro`: a real HAProxy started for the run ([`proxy`]), apply
//! throughput against a raw pipelined client ([`apply`]), reload of the large config
//! ([`reload`]), the pure core at scale ([`scale`]), what the access rules cost per
//! request ([`access`]), and requests per second with issue 24's shaping ([`shaping`]).

pub mod access;
pub mod apply;
pub mod procfs;
pub mod proxy;
pub mod reload;
pub mod scale;
pub mod shaping;
