//! The blkif backend engine: everything a block backend does between Xen's mechanisms and
//! a disk, as safe Rust over small traits (`hv`), so it runs and is tested on the host.
//!
//! - [`hv`]: the traits the kernel implements with hypercalls (grants, event channels,
//!   xenstore, shared pages) and the split-phase [`store::BlockStore`].
//! - [`abi`]: decoding ring slots (native x86_64 and x86_32 layouts) into plain values.
//! - [`request`]: validation of one copied request into a [`request::Request`].
//! - [`ring`]: the shared ring per `io/ring.h`, with every index the frontend writes checked.
//! - [`xenbus`]: the backend's xenbus state machine, a pure function.
//! - [`config`]: parsing the frontend's xenstore keys against what was advertised.
//! - [`engine`]: one connected frontend: ring passes, batched grant work, data paths
//!   (map, persistent, copy), responses, statistics.
//! - [`device`]: one vbd: the state machine's actions carried out against xenstore.
//! - [`service`]: the driver domain's blkback: discovery under `backend/vbd`, the device
//!   table, refused targets, detach, boot-module reuse, statistics.
//! - [`target`]: parsing `target=` (the backend's `params`).
//! - [`store`]: RAM (frames or a boot module) and null stores.
//! - [`text`]: frontend strings escaped and cut before they reach a message.
//! - `testing` (feature `test-utils`): fake hypervisor and a Linux-like mock frontend.
#![no_std]
#![forbid(unsafe_code)]
#![warn(clippy::arithmetic_side_effects)]

extern crate alloc;

/// The hypervisor traits this engine is generic over (the runtime's contract, `xen-hv`).
pub use xen_hv as hv;

pub mod abi;
pub mod budget;
pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod persistent;
pub mod request;
pub mod service;
pub mod stats;
pub mod store;
pub mod target;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod text;
pub mod xenbus;
