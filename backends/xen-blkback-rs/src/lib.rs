//! The driver domain's library side, host-tested: its configuration (`config`: the command
//! line parsed once into types) and, with the `net` feature, its network stack (`netstack`:
//! the vif as a smoltcp device, TCP streams for NBD). The binary (`main.rs`) only wires.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
#[cfg(feature = "net")]
pub mod netstack;

pub use config::*;
