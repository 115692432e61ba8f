//! `io/*.h`: the shared-ring protocols between frontends and backends.
pub mod blkif;
pub mod console;
pub mod netif;
pub mod ring;
pub mod xenbus;
pub mod xs_wire;
