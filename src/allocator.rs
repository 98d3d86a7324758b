//! The daemon's allocator: jemalloc, behind the default feature `jemalloc` (Cargo.toml says
//! why: it returns a cold start's transient peak to the kernel, where glibc's malloc kept it;
//! bench-scale measured swarm-lb's RSS at 10,000 services 338 MiB against 1.2-1.8 GiB).

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
