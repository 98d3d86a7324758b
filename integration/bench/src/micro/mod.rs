//! The parts of `bench-micro`: a real HAProxy started for the run ([`proxy`]), apply
//! throughput against a raw pipelined client ([`apply`]), reload of the large config
//! ([`reload`]), and the pure core at scale ([`scale`]).

pub mod apply;
pub mod procfs;
pub mod proxy;
pub mod reload;
pub mod scale;
